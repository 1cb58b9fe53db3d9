// How the addon's pumps write into an MPTCP socket: the way a plain writer does, filling it up to
// the mark where poll() stops calling it writable (its queue at two thirds of its send buffer) and
// at most kFeedBytes past it. Writing on until EAGAIN fills the buffer to the brim, and the
// kernel's scheduler commits the excess to one subflow's queue, which then drains alone while the
// other subflow waits with nothing to send: at 2 x 20 Mbit/s a third of the uploads through
// `braid up` ran 2-7 % below raw MPTCP (curl writing the same file straight into its socket, 64 KiB
// per write), none of 18 fed this way (README, "Uploads at the shaped links' limit"). Other sockets
// are written as fast as they take it.
#pragma once

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "uapi.h"

namespace braid {

constexpr size_t kFeedBytes = 64 << 10;

// Whether `fd` is an MPTCP socket, which the pumps feed (FeedBudget); others take all there is.
// BRAID_FEED=0 writes MPTCP sockets until EAGAIN too, as before (for comparisons).
inline bool FedSocket(int fd) {
  const char* off = getenv("BRAID_FEED");
  if (off && strcmp(off, "0") == 0) return false;
  int proto = 0;
  socklen_t len = sizeof(proto);
  return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_MPTCP;
}

// poll() says `fd` takes more now. An error counts as writable: the next write reports it.
inline bool Writable(int fd) {
  pollfd p = {fd, POLLOUT, 0};
  int n = poll(&p, 1, 0);
  return n != 0 && (n < 0 || (p.revents & POLLOUT) != 0);
}

// What a fed socket takes in this wakeup: its room below the writable mark (SIOCOUTQ, the bytes
// written and not yet acknowledged, against two thirds of SO_SNDBUF) plus kFeedBytes, or 0 when it
// is past the mark (the pump then waits for poll() to call it writable). The mark is counted in
// the kernel's memory units and SIOCOUTQ in bytes: when they disagree, poll() decides.
inline size_t FeedBudget(int fd) {
  int queued = 0, sndbuf = 0;
  socklen_t len = sizeof(sndbuf);
  if (ioctl(fd, SIOCOUTQ, &queued) != 0 || getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0) return kFeedBytes;
  long room = 2L * sndbuf / 3 - queued;
  if (room > 0) return static_cast<size_t>(room) + kFeedBytes;
  return Writable(fd) ? kFeedBytes : 0;
}

// One wakeup's allowance for writing into a pump's socket: all there is for a socket that is not
// fed, else its FeedBudget, read at the wakeup's first write.
class FeedAllowance {
 public:
  FeedAllowance(int fd, bool fed) : fd_(fd), fed_(fed) {}

  // How much of `want` to write now: 0 when a fed socket is past its mark (wait for poll()).
  size_t Allow(size_t want) {
    if (!fed_) return want;
    if (!read_) {
      read_ = true;
      left_ = FeedBudget(fd_);
    }
    return want < left_ ? want : left_;
  }

  // `n` bytes written, never more than allowed; true once a fed socket's allowance is spent.
  bool Spend(size_t n) {
    if (!fed_) return false;
    left_ -= n;
    return left_ == 0;
  }

 private:
  int fd_;
  bool fed_;
  bool read_ = false;
  size_t left_ = 0;
};

}  // namespace braid

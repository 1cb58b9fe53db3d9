// How the addon's pumps write into an MPTCP socket: the way a plain writer does, kFeedBytes at a
// time and only while poll() calls the socket writable (its queue at most two thirds of its send
// buffer). Writing on until EAGAIN fills the buffer to the brim, and the kernel's scheduler commits
// the excess to one subflow's queue, which then drains alone while the other subflow waits with
// nothing to send: at 2 x 20 Mbit/s a third of the uploads through `braid up` ran 2-7 % below raw
// MPTCP (curl writing the same file straight into its socket), none of 18 fed this way (README,
// "Uploads at the shaped links' limit"). Other sockets are written as fast as they take it.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <cstddef>

#include "uapi.h"

namespace braid {

constexpr size_t kFeedBytes = 64 << 10;

// kFeedBytes for an MPTCP socket, 0 (no limit) for any other.
inline size_t FeedFor(int fd) {
  int proto = 0;
  socklen_t len = sizeof(proto);
  return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_MPTCP ? kFeedBytes : 0;
}

// poll() says `fd` takes more now. An error counts as writable: the next write reports it.
inline bool Writable(int fd) {
  pollfd p = {fd, POLLOUT, 0};
  int n = poll(&p, 1, 0);
  return n != 0 && (n < 0 || (p.revents & POLLOUT) != 0);
}

}  // namespace braid

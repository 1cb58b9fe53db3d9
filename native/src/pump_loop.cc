// One kind of record pump's epoll: see pump_loop.h.
#include "pump_loop.h"

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace braid {

Sent SendSome(int fd, const unsigned char* data, size_t n, size_t* off) {
  while (*off < n) {
    ssize_t w = send(fd, data + *off, n - *off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      *off += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    return w < 0 && errno == EAGAIN ? Sent::kFull : Sent::kError;
  }
  return Sent::kAll;
}

void PumpLoop::Free(LoopPump* p) {
  if (p->async_context) napi_async_destroy(env_, p->async_context);
  delete p;
}

void PumpLoop::OnEpoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<PumpLoop*>(handle->data);
  if (status < 0) return;
  epoll_event evs[64];
  int n = epoll_wait(self->ep_, evs, 64, 0);
  if (n <= 0) return;
  Napi::HandleScope scope(Napi::Env(self->env_));
  self->depth_++;
  for (int i = 0; i < n; i++) {
    // Looked up each time: a pump run earlier in this batch may have ended (or started) others.
    LoopPump* p = self->Find(static_cast<uint32_t>(evs[i].data.u64 >> 1));
    if (p && !p->ended) p->Run();
  }
  self->depth_--;
  for (LoopPump* p : self->dead_) self->Free(p);
  self->dead_.clear();
}

void PumpLoop::Setup(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  if (ep_ >= 0) {
    if (loop != loop_) throw Napi::Error::New(env, std::string(name_) + ": only on the thread that first used it");
    return;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) throw ErrnoError(env, errno, "epoll_create1");
  if (uv_poll_init(loop, &poll_, ep) != 0) {
    close(ep);
    throw ErrnoError(env, EBADF, "uv_poll_init");
  }
  poll_.data = this;
  // The sockets keep the loop alive while they are open; this watcher never does.
  uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
  uv_poll_start(&poll_, UV_READABLE, OnEpoll);
  ep_ = ep;
  loop_ = loop;
  env_ = env;
}

void PumpLoop::Add(LoopPump* p) {
  napi_async_init(env_, nullptr, Napi::String::New(Napi::Env(env_), name_), &p->async_context);
  p->id = next_id_++;
  if (next_id_ == 0) next_id_ = 1;
  pumps_[p->id] = p;
}

LoopPump* PumpLoop::Find(uint32_t id) const {
  auto it = pumps_.find(id);
  return it == pumps_.end() ? nullptr : it->second;
}

bool PumpLoop::Watch(LoopPump* p, int fd, uint32_t* cur, uint32_t want, uint64_t tag) {
  if (*cur == want) return true;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = (static_cast<uint64_t>(p->id) << 1) | tag;
  int op = *cur == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (epoll_ctl(ep_, op, fd, &ev) != 0) return false;
  *cur = want;
  return true;
}

void PumpLoop::Retire(LoopPump* p) {
  pumps_.erase(p->id);
  if (depth_ > 0) dead_.push_back(p);
  else Free(p);
}

}  // namespace braid

#endif

#pragma once
// An epoll of the addon's own for one kind of record pump (seal.cc, open.cc), watched by one
// uv_poll on the main libuv loop. Their sockets are Node's own fds: libuv keeps one registration
// per fd in its own epoll, so a pump watching the same fd there would take Node's place; in an
// epoll of its own it does not. Each kind has its own, since the sealer (writing) and the opener
// (reading) of one relay connection watch the same fd, and an epoll holds an fd once. Level
// triggered; each ready pump's Run() is called once per batch.
//
// A pump's fds are not duplicated (a tunnel costs no descriptor), so Node can close one under a
// pump and the number be reused: SameFile() tells a pump that its fd still names the socket it
// started with, and Watch() registers only what changed.
#include <napi.h>
#include <sys/stat.h>
#include <uv.h>

#include <cstdint>
#include <map>
#include <vector>

namespace braid {

struct LoopPump {
  uint32_t id = 0;
  bool ended = false;
  napi_async_context async_context = nullptr;

  LoopPump() = default;
  LoopPump(const LoopPump&) = delete;
  LoopPump& operator=(const LoopPump&) = delete;
  virtual ~LoopPump() = default;
  // Handles whatever its fds are ready for; may end the pump (Retire) or call into JavaScript.
  virtual void Run() = 0;
};

class PumpLoop {
 public:
  // `name`: the pumps' async resource name, and the start function's in errors.
  explicit PumpLoop(const char* name) : name_(name) {}
  PumpLoop(const PumpLoop&) = delete;
  PumpLoop& operator=(const PumpLoop&) = delete;

  // Makes the epoll on first use, on this thread's loop only (throws elsewhere).
  void Setup(Napi::Env env);
  napi_env env() const { return env_; }
  // Gives the pump its id and an async context, and lists it; Run() is called for its fds' events
  // from the loop's next turn on.
  void Add(LoopPump* p);
  LoopPump* Find(uint32_t id) const;
  // Registers what `p` waits for on fd (0: nothing), only when that differs from *cur.
  bool Watch(LoopPump* p, int fd, uint32_t* cur, uint32_t want, uint64_t tag);
  // Unlists an ending pump; it is deleted now, or after the batch that is running it.
  void Retire(LoopPump* p);

 private:
  static void OnEpoll(uv_poll_t* handle, int status, int events);
  void Free(LoopPump* p);

  const char* name_;
  napi_env env_ = nullptr;
  uv_loop_t* loop_ = nullptr;
  int ep_ = -1;
  uv_poll_t poll_{};
  int depth_ = 0;                     // inside OnEpoll: retired pumps are deleted after it
  std::vector<LoopPump*> dead_;
  std::map<uint32_t, LoopPump*> pumps_;
  uint32_t next_id_ = 1;
};

enum class Sent { kAll, kFull, kError };

// Sends data[*off, n) on a non-blocking socket until it is all sent (kAll), the socket is full
// (kFull), or send fails (kError, errno set); *off moves past what was sent.
Sent SendSome(int fd, const unsigned char* data, size_t n, size_t* off);

// Whether fd still names the file it named when dev/ino were taken.
inline bool SameFile(int fd, dev_t dev, ino_t ino) {
  struct stat st;
  return fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

}  // namespace braid

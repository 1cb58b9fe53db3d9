#pragma once
// The TLS 1.3 records one peer sends after the handshake, opened in order (open.cc reads them off
// the relay connection): application data kept, NewSessionTicket skipped (the relay client does
// not resume sessions), KeyUpdate followed (RFC 8446 4.6.3; one asking for an update in return is
// refused, since the stream's writer would have to answer it), close_notify ends the stream, and
// anything else is a fault with an errno and a reason. The first record is tried at the given
// sequence number and the next three, in case Node had read a session ticket the caller did not
// count.
#include <napi.h>

#include <cstddef>

#include "tls_records.h"

namespace braid {

constexpr size_t kMaxRecordBody = 16384 + 256;  // RFC 8446 5.2: TLSCiphertext.length

struct RecordFault {
  int err;
  const char* detail;
};

struct RecordStream {
  Opener opener;
  bool first = true;    // no record opened yet (the sequence number is searched)
  bool closed = false;  // close_notify came: whatever follows is ignored (RFC 8446 6.1)

  // Opens the complete records in buf[0, size), their data appended at out + *n (room for size
  // bytes); *used is where the first incomplete record starts. False with *f on a record that
  // cannot be accepted (what came before it is in out[0, *n)).
  bool OpenAll(const unsigned char* buf, size_t size, size_t* used, unsigned char* out, size_t* n, RecordFault* f);
};

// openRecords (the record stream alone, for the self-check and tests).
void RegisterRecordStream(Napi::Env env, Napi::Object exports);

}  // namespace braid

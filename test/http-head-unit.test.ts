/**
 * takeRequestHead (proxy/http-parse.ts): how the HTTP proxy takes one request head off a client's
 * buffered bytes, fed whole, byte by byte, after blank lines, and past the size bound.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HttpParseError, MAX_HEAD_BYTES, takeRequestHead } from '../electron/core/proxy/http-parse';

const HEAD = 'POST http://example.test/ HTTP/1.1\r\nHost: example.test\r\nContent-Length: 4\r\n\r\n';

describe('takeRequestHead', () => {
  test('a whole head is taken and the body bytes after it are left', () => {
    const r = takeRequestHead(Buffer.from(HEAD + 'abcd', 'latin1'), 0);
    assert.equal(r.head?.toString('latin1'), HEAD);
    assert.equal(r.rest.toString('latin1'), 'abcd');
    assert.equal(r.scanFrom, 0);
  });

  test('fed one byte at a time, the head is complete exactly at its last byte', () => {
    let buf: Buffer = Buffer.alloc(0);
    let scanFrom = 0;
    const bytes = Buffer.from(HEAD, 'latin1');
    for (let i = 0; i < bytes.length; i++) {
      buf = Buffer.concat([buf, bytes.subarray(i, i + 1)]);
      const r = takeRequestHead(buf, scanFrom);
      if (i < bytes.length - 1) {
        assert.equal(r.head, null, `complete after ${i + 1} of ${bytes.length} bytes`);
        assert.equal(r.scanFrom, buf.length);
        buf = r.rest;
        scanFrom = r.scanFrom;
      } else {
        assert.equal(r.head?.toString('latin1'), HEAD);
        assert.equal(r.rest.length, 0);
      }
    }
  });

  test('blank lines before a head (between keep-alive requests) are skipped', () => {
    const r = takeRequestHead(Buffer.from('\r\n\r\n\n' + HEAD, 'latin1'), 0);
    assert.equal(r.head?.toString('latin1'), HEAD);
  });

  test('only blank lines so far: nothing taken, nothing kept', () => {
    const r = takeRequestHead(Buffer.from('\r\n\r\n', 'latin1'), 0);
    assert.equal(r.head, null);
    assert.equal(r.rest.length, 0);
  });

  test('an unfinished head over MAX_HEAD_BYTES, and a finished one, are a 431', () => {
    const long = Buffer.alloc(MAX_HEAD_BYTES + 1, 'a');
    assert.throws(() => takeRequestHead(long, 0), (e: unknown) => e instanceof HttpParseError && e.status === 431);
    const big = Buffer.from(`GET / HTTP/1.1\r\nX-Big: ${'b'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`, 'latin1');
    assert.throws(() => takeRequestHead(big, 0), (e: unknown) => e instanceof HttpParseError && e.status === 431);
    const atBound = Buffer.from(`GET / HTTP/1.1\r\nX-Fit: ${'c'.repeat(MAX_HEAD_BYTES - 200)}\r\n\r\n`, 'latin1');
    assert.ok(takeRequestHead(atBound, 0).head);
  });
});

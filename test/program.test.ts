/**
 * Which program opened each connection (issue 13, "Which program"): the owner of the client's
 * socket, found from /proc. A SOCKS client and an HTTP client on loopback, each a real program of
 * its own (python3, curl), are named in the connections list, `braid status` and the close log;
 * `connections.closeMany` closes a filtered set.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { callControl, readEndpoint } from '../electron/core/control/discovery';
import type { ConnectionView } from '../electron/core/contract';
import { runBraid, startBraid, type BraidProxy } from './helpers/proc';
import { startOrigin, type OriginServer } from './helpers/servers';

describe('the program behind each connection', () => {
  let braid: BraidProxy;
  let origin: OriginServer;
  const state = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-program-'));

  before(async () => {
    // A destination that sends its body slowly keeps connections open long enough to look at.
    origin = await startOrigin({ blobs: { big: 64 * 1024 * 1024 } });
    braid = await startBraid(['up', '-v', '--port', '0', '--dial', 'tcp', '--control', '127.0.0.1:0', '--state-dir', state]);
  });

  after(async () => {
    await braid?.stop('SIGTERM', 5000);
    await origin?.close();
    fs.rmSync(state, { recursive: true, force: true });
  });

  const list = async (): Promise<ConnectionView[]> => callControl<ConnectionView[]>(readEndpoint(state), 'connections.list');

  test('python3 over SOCKS5 and curl over HTTP are named with their pids; closeMany closes the filtered ones', async () => {
    // Each reads slowly (1 KB/s), so its connection stays open.
    const py = spawn('python3', ['-c', `
import socket, struct, time
s = socket.create_connection(("127.0.0.1", ${braid.port}))
s.sendall(b"\\x05\\x01\\x00"); s.recv(2)
s.sendall(b"\\x05\\x01\\x00\\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", ${origin.port}))
s.recv(10)
s.sendall(b"GET /blob/big HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
while True:
    d = s.recv(1024)
    if not d: break
    time.sleep(1)
`], { stdio: 'ignore' });
    const curl = spawn('curl', ['-sS', '--limit-rate', '1K', '-o', '/dev/null', '-x', `http://127.0.0.1:${braid.port}`, `${origin.base}/blob/big`], { stdio: 'ignore' });
    try {
      let conns: ConnectionView[] = [];
      for (let i = 0; i < 100; i++) {
        conns = await list();
        if (conns.filter((c) => c.program).length >= 2) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const byName = new Map(conns.filter((c) => c.program).map((c) => [c.program!.name, c]));
      assert.equal(byName.get('python3')?.program?.pid, py.pid, JSON.stringify(conns));
      assert.equal(byName.get('python3')?.protocol, 'socks5');
      assert.equal(byName.get('curl')?.program?.pid, curl.pid, JSON.stringify(conns));
      assert.equal(byName.get('curl')?.protocol, 'http');

      const st = await runBraid(['status', '--state-dir', state]);
      assert.match(st.stdout.toString(), new RegExp(`curl \\(${curl.pid}\\)\\s+-> 127\\.0\\.0\\.1:${origin.port}`));
      assert.match(st.stdout.toString(), new RegExp(`python3 \\(${py.pid}\\)`));

      // "close the filtered": every connection of curl, and nothing else.
      const ids = conns.filter((c) => c.program?.name === 'curl').map((c) => c.id);
      const r = await callControl<{ closed: number }>(readEndpoint(state), 'connections.closeMany', { ids: [...ids, 999_999] });
      assert.equal(r.closed, ids.length);
      // Closed with a reset: curl's own socket to the proxy is gone at once (the kernel's view).
      const curlSockets = (): string => execFileSync('ss', ['-tnpH', 'state', 'established', `dport = :${braid.port}`]).toString().split('\n').filter((l) => l.includes(`pid=${curl.pid},`)).join('\n');
      let stillOpen = curlSockets();
      for (let i = 0; i < 60 && stillOpen; i++) {
        await new Promise((r) => setTimeout(r, 50));
        stillOpen = curlSockets();
      }
      assert.equal(stillOpen, '', 'curl\'s connection to the proxy is still open');
      const left = await list();
      assert.ok(left.some((c) => c.program?.name === 'python3'), 'python3\'s connection was left alone');
      assert.ok(!left.some((c) => c.program?.name === 'curl'));
    } finally {
      py.kill('SIGKILL');
      curl.kill('SIGKILL');
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.match(braid.stderr(), new RegExp(`connection \\d+ closed: http 127\\.0\\.0\\.1:\\d+ \\(curl, pid ${curl.pid}\\)`));
  });
});

// ProgramResolver against a stand-in /proc (the real one is exercised by program.test.ts and
// transparent.test.ts): the socket tables' fallback, and descriptors remembered between batches
// that are re-read when a number now holds another socket.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { procHexAddress } from '../electron/core/proxy/client-gone';
import { ProgramResolver } from '../electron/core/proxy/program';

const hexPort = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');
const SERVER = { address: '127.0.0.1', port: 1080 };

function fakeProc(): { root: string; socket(pid: number, fd: number, inode: number, clientPort: number): void; comm(pid: number, name: string): void } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-proc-'));
  fs.mkdirSync(path.join(root, 'net'));
  const lines: string[] = ['  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode'];
  const write = (): void => fs.writeFileSync(path.join(root, 'net', 'tcp'), lines.join('\n') + '\n');
  write();
  fs.writeFileSync(path.join(root, 'net', 'tcp6'), lines[0] + '\n');
  return {
    root,
    socket(pid, fd, inode, clientPort) {
      const dir = path.join(root, String(pid), 'fd');
      fs.mkdirSync(dir, { recursive: true });
      fs.rmSync(path.join(dir, String(fd)), { force: true });
      fs.symlinkSync(`socket:[${inode}]`, path.join(dir, String(fd)));
      const uid = fs.statSync(path.join(root, String(pid))).uid;
      lines.push(`   ${lines.length}: ${procHexAddress('127.0.0.1')}:${hexPort(clientPort)} ${procHexAddress(SERVER.address)}:${hexPort(SERVER.port)} 01 00000000:00000000 00:00000000 00000000 ${uid} 0 ${inode} 1 0000000000000000 20 4 30 10 -1`);
      write();
    },
    comm(pid, name) {
      fs.mkdirSync(path.join(root, String(pid)), { recursive: true });
      fs.writeFileSync(path.join(root, String(pid), 'comm'), name + '\n');
    },
  };
}

test('a client socket is traced to its process; a descriptor number reused for a new socket is read again', async () => {
  // The resolver's batch timer is unref'd (it must not keep Braid alive); the test keeps itself alive.
  const keep = setInterval(() => {}, 1000);
  const proc = fakeProc();
  proc.comm(4242, 'curl');
  proc.comm(4343, 'python3');
  proc.socket(4242, 5, 1001, 40001);
  proc.socket(4343, 7, 2001, 40002);
  const r = new ProgramResolver({ procRoot: proc.root });
  const [a, b, none] = await Promise.all([
    r.lookup({ address: '127.0.0.1', port: 40001 }, SERVER),
    r.lookup({ address: '127.0.0.1', port: 40002 }, SERVER),
    r.lookup({ address: '127.0.0.1', port: 40999 }, SERVER),
  ]);
  assert.deepEqual(a, { name: 'curl', pid: 4242 });
  assert.deepEqual(b, { name: 'python3', pid: 4343 });
  assert.equal(none, null, 'a socket the tables do not list has no program');
  // curl closed fd 5 and opened a new connection on the same number: the remembered link is stale.
  proc.socket(4242, 5, 1002, 40003);
  assert.deepEqual(await r.lookup({ address: '127.0.0.1', port: 40003 }, SERVER), { name: 'curl', pid: 4242 });
  // and a new descriptor of a process seen before
  proc.socket(4343, 8, 2002, 40004);
  assert.deepEqual(await r.lookup({ address: '127.0.0.1', port: 40004 }, SERVER), { name: 'python3', pid: 4343 });
  fs.rmSync(proc.root, { recursive: true, force: true });
  clearInterval(keep);
});

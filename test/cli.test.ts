/**
 * The `braid` command line: help, flag and config errors (exit 2, naming the culprit), config file
 * merged under flags, and a clean exit on SIGINT/SIGTERM with connections still open.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI_PATH, runBraid, startBraid } from './helpers/proc';
import { readBytes, socksConnectRequest } from './helpers/raw-client';
import { OriginServer, startOrigin } from './helpers/servers';

let tmp: string;
let origin: OriginServer;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-cli-'));
  origin = await startOrigin({ blobs: { big: 8 * 1024 * 1024 } });
});

after(async () => {
  await origin?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function config(name: string, content: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, content);
  return file;
}

describe('help', () => {
  test('braid --help lists the commands and exits 0', async () => {
    const r = await runBraid(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout.toString(), /usage: braid <command>/);
    assert.match(r.stdout.toString(), /\bup\b.*proxy/);
  });

  test('braid up --help shows the flags', async () => {
    const r = await runBraid(['up', '--help']);
    assert.equal(r.code, 0);
    for (const flag of ['--host', '--port', '--auth', '--dial', '--config']) assert.ok(r.stdout.toString().includes(flag), flag);
  });

  test('an unknown command exits 2', async () => {
    const r = await runBraid(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });
});

describe('bad flags and config exit 2 with a message naming the culprit', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown flag', ['up', '--bogus'], /--bogus/],
    ['non-numeric port', ['up', '--port', 'abc'], /--port/],
    ['port out of range', ['up', '--port', '70000'], /--port/],
    ['bad dial mode', ['up', '--dial', 'udp'], /--dial/],
    ['auth without colon', ['up', '--auth', 'alice'], /--auth/],
    ['missing value', ['up', '--port'], /--port/],
    ['host name instead of address', ['up', '--host', 'example.org'], /--host must be a numeric/],
    ['missing config file', ['up', '--config', '/nonexistent/braid.json'], /\/nonexistent\/braid\.json/],
  ];
  for (const [name, args, re] of cases) {
    test(name, async () => {
      const r = await runBraid(args, { timeoutMs: 10_000 });
      assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stdout.length, 0, 'nothing on stdout (no listening line)');
    });
  }

  const configCases: [string, string, RegExp][] = [
    ['not JSON', '{ nope', /not valid JSON/],
    ['wrong type', JSON.stringify({ proxy: { port: 'x' } }), /proxy\.port/],
    ['unknown field', JSON.stringify({ proxy: { prot: 1 } }), /proxy\.prot/],
    ['bad timeout', JSON.stringify({ timeouts: { idleMs: -1 } }), /timeouts\.idleMs/],
    ['bad limit', JSON.stringify({ limits: { maxConnections: 0 } }), /limits\.maxConnections/],
    ['bad auth', JSON.stringify({ proxy: { auth: { username: 'a' } } }), /proxy\.auth\.password/],
    ['bad dial', JSON.stringify({ proxy: { dial: 'quic' } }), /proxy\.dial/],
  ];
  for (const [name, content, re] of configCases) {
    test(`config: ${name}`, async () => {
      const r = await runBraid(['up', '--config', config(`${name.replace(/\W/g, '_')}.json`, content)], { timeoutMs: 10_000 });
      assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.match(r.stderr, /ECONFIG/);
    });
  }
});

describe('up', () => {
  test('flags override the config file', async () => {
    const file = config('ok.json', JSON.stringify({ proxy: { host: '127.0.0.1', port: 1, dial: 'mptcp' } }));
    const p = await startBraid(['up', '--config', file, '--port', '0', '--dial', 'tcp']);
    try {
      assert.equal(p.host, '127.0.0.1');
      assert.notEqual(p.port, 1);
      assert.equal(p.dial, 'tcp');
    } finally {
      await p.stop();
    }
  });

  test('a port in use is a clear failure (exit 1)', async () => {
    const p = await startBraid(['up', '--port', '0', '--dial', 'tcp']);
    try {
      const r = await runBraid(['up', '--port', String(p.port), '--dial', 'tcp'], { timeoutMs: 10_000 });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /EADDRINUSE/);
    } finally {
      await p.stop();
    }
  });

  test('without the native addon, --dial mptcp warns once and dials TCP', async () => {
    // A copy of the compiled core under a package root whose native/ has no build: the addon
    // cannot load there, exactly as on a machine where it failed to build.
    const root = path.join(tmp, 'no-addon');
    const core = path.dirname(path.dirname(CLI_PATH));
    fs.cpSync(core, path.join(root, 'dist', 'electron', 'core'), { recursive: true });
    fs.mkdirSync(path.join(root, 'native'));
    fs.writeFileSync(path.join(root, 'package.json'), '{}');
    // The npm dependencies are installed as usual; only the addon is missing.
    fs.symlinkSync(path.resolve(core, '..', '..', '..', 'node_modules'), path.join(root, 'node_modules'));
    const cli = path.join(root, 'dist', 'electron', 'core', 'cli', 'main.js');
    const p = await startBraid(['up', '--port', '0', '--dial', 'mptcp'], { cli });
    try {
      assert.equal(p.dial, 'tcp');
      const warnings = p.stderr().split('\n').filter((l) => /warning/i.test(l));
      assert.equal(warnings.length, 1, p.stderr());
      assert.match(warnings[0], /MPTCP is not available/);
      const s = net.connect({ host: '127.0.0.1', port: p.port });
      s.on('error', () => {});
      try {
        s.write(Buffer.concat([Buffer.from([5, 1, 0]), socksConnectRequest('127.0.0.1', origin.port)]));
        assert.equal((await readBytes(s, 12)).subarray(0, 4).toString('hex'), '05000500');
        s.write('HEAD /blob/big HTTP/1.0\r\n\r\n');
        assert.equal((await readBytes(s, 15)).toString(), 'HTTP/1.1 200 OK');
      } finally {
        s.destroy();
      }
    } finally {
      await p.stop();
    }
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    test(`${signal} with a transfer in flight exits 0 and closes the client connection`, async () => {
      const p = await startBraid(['up', '--port', '0', '--dial', 'tcp']);
      const s = net.connect({ host: '127.0.0.1', port: p.port });
      s.on('error', () => {});
      try {
        s.write(Buffer.concat([Buffer.from([5, 1, 0]), socksConnectRequest('127.0.0.1', origin.port)]));
        const reply = await readBytes(s, 12);
        assert.equal(reply.subarray(0, 4).toString('hex'), '05000500');
        // Ask for a large body and stop reading, so the transfer is stuck mid-way.
        s.write('GET /blob/big HTTP/1.1\r\nHost: x\r\n\r\n');
        await readBytes(s, 1000);
        const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
        const { code, signal: sig } = await p.stop(signal, 8000);
        assert.equal(sig, null, 'exited by itself, not killed');
        assert.equal(code, 0, p.stderr());
        s.resume();
        await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error('client socket still open')), 5000))]);
      } finally {
        s.destroy();
        await p.stop('SIGKILL');
      }
    });
  }
});

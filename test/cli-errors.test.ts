/**
 * Errors that point the right way (issue 11, point 6): a bad value is named as a bad value, a flag
 * is named as the flag (not the config field it sets), `localhost` is accepted, a busy port says
 * which address is taken and what to change, and an explicitly chosen control port is never
 * silently swapped for another.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { skipUnlessRoot, Topology, type Namespace } from './helpers/netns';
import { CONTROL_LINE } from './helpers/control-client';
import { CLI_PATH, LISTENING_LINE, runBraid, runProcess, startProcess } from './helpers/proc';

let tmp: string;

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-cli-errors-'));
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** A port something else holds for the duration of `fn`. */
async function withBusyPort<T>(fn: (port: number) => Promise<T>): Promise<T> {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  try {
    return await fn((holder.address() as net.AddressInfo).port);
  } finally {
    holder.close();
  }
}

describe('a value that is not what the flag takes is named as such', () => {
  const cases: Array<[string[], RegExp]> = [
    [['up', '--port', '-1'], /--port must be a port number from 0 to 65535, got '-1'/],
    [['up', '--port', '-1080'], /--port must be a port number from 0 to 65535, got '-1080'/],
    [['relay', '--max-connections', '-5'], /--max-connections must be a whole number from 1 to 1000000, got '-5'/],
  ];
  for (const [args, re] of cases) {
    test(args.join(' '), async () => {
      const r = await runBraid(args, { timeoutMs: 10_000 });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /needs a value/);
    });
  }

  test('a flag with no value at all still says so', async () => {
    const r = await runBraid(['up', '--port'], { timeoutMs: 10_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /option --port needs a value/);
  });

  test('a flag followed by another of its command\'s options still says it needs a value', async () => {
    const r = await runBraid(['up', '--port', '--host', '127.0.0.1'], { timeoutMs: 10_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /option --port needs a value/);
  });

  test('a value that starts with a dash and is no option is taken as the value (a base64url secret can)', async () => {
    // --metrics takes HOST:PORT|off: the value reaches its own check instead of "needs a value".
    const r = await runBraid(['relay', '--metrics', '-Yu1YoWp', '--dir', path.join(tmp, 'relay-dash-value')], { timeoutMs: 10_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stderr, /needs a value/);
    assert.match(r.stderr, /--metrics/);
    assert.match(r.stderr, /-Yu1YoWp/);
  });

  test('braid relay checks every flag before it writes anything', async () => {
    const dir = path.join(tmp, 'relay-never-created');
    const r = await runBraid(['relay', '--dir', dir, '--idle-timeout', '0'], { timeoutMs: 10_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--idle-timeout/);
    assert.equal(fs.existsSync(dir), false, 'a refused start created credentials');
  });
});

describe('flags are named as flags, not as the config fields they set', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['--host', ['up', '--host', 'example.org'], /^braid: --host must be a numeric IPv4 or IPv6 address or 'localhost', got 'example\.org'/m],
    ['--auth', ['up', '--auth', `${'u'.repeat(300)}:p`], /^braid: --auth USER must be at most 255 characters/m],
    ['--control', ['up', '--control', 'example.org:9797'], /^braid: --control must be a numeric IPv4 or IPv6 address or 'localhost'/m],
  ];
  for (const [name, args, re] of cases) {
    test(name, async () => {
      const r = await runBraid(args, { timeoutMs: 10_000 });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /proxy\.|control\.|config field/);
    });
  }

  test('a config file still gets the field named', async () => {
    const file = path.join(tmp, 'bad-host.json');
    fs.writeFileSync(file, JSON.stringify({ proxy: { host: 'example.org' } }));
    const r = await runBraid(['up', '--config', file], { timeoutMs: 10_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /config field 'proxy\.host'/);
  });

  test('--host localhost and --control localhost:PORT are accepted (the IPv4 loopback)', async () => {
    const p = await startProcess(process.execPath, [CLI_PATH, 'up', '--host', 'localhost', '--port', '0', '--control', 'localhost:0', '--paths', 'off'], { ready: CONTROL_LINE });
    try {
      assert.equal(LISTENING_LINE.exec(p.stdout())?.[1], '127.0.0.1');
      assert.equal(p.match![2], '127.0.0.1');
    } finally {
      await p.stop();
    }
  });
});

describe('a busy port says which address is taken and what to change', () => {
  for (const control of [['--control', 'off'], ['--control', '127.0.0.1:0']]) {
    test(`the proxy's port (${control.join(' ')})`, async () => {
      await withBusyPort(async (port) => {
        const r = await runBraid(['up', '--port', String(port), ...control, '--paths', 'off'], { timeoutMs: 10_000 });
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`^braid: cannot listen on 127\\.0\\.0\\.1:${port}: the address is already in use .*; choose another port with --port \\[EADDRINUSE\\]$`, 'm'));
        assert.doesNotMatch(r.stderr, /Unhandled|ESTART/);
        assert.equal(r.stdout.length, 0);
      });
    });
  }

  test('an explicit --control HOST:PORT that is busy fails, naming --control; it never moves to another port', async () => {
    await withBusyPort(async (port) => {
      const r = await runBraid(['up', '--port', '0', '--control', `127.0.0.1:${port}`, '--paths', 'off'], { timeoutMs: 10_000 });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^braid: --control 127\\.0\\.0\\.1:${port}: the address is already in use .*choose another HOST:PORT, or --control off`, 'm'));
      assert.doesNotMatch(r.stdout.toString(), /control API on/);
    });
  });
});

describe('the default control port, busy, moves to a free one; a chosen one does not', { skip: skipUnlessRoot() }, () => {
  // In a namespace of its own: 9797 there is free of any other Braid on this machine.
  let topology: Topology;
  let ns: Namespace;

  before(async () => {
    topology = new Topology();
    ns = await topology.addNamespace('e');
    const holder = ns.spawn([process.execPath, '-e', "require('net').createServer().listen(9797, '127.0.0.1', () => console.log('ready'))"], { label: 'port 9797 holder' });
    await holder.waitForLine(/^ready$/, 10_000);
  });

  after(async () => {
    await topology?.destroy();
  });

  const inNs = (): string[] => ['ip', 'netns', 'exec', ns.name];

  test('no --control: a warning, and the control API on another port', async () => {
    const p = await startProcess(process.execPath, [CLI_PATH, 'up', '--port', '0', '--paths', 'off'], { prefix: inNs(), ready: CONTROL_LINE });
    try {
      assert.match(p.stdout(), LISTENING_LINE);
      assert.doesNotMatch(p.stdout(), /control API on http:\/\/127\.0\.0\.1:9797\//);
      for (let i = 0; i < 30 && !/9797/.test(p.stderr()); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(p.stderr(), /control port 9797 is in use; using a free one/);
    } finally {
      await p.stop();
    }
  });

  test('--control 127.0.0.1:9797: an error naming --control', async () => {
    const r = await runProcess(process.execPath, [CLI_PATH, 'up', '--port', '0', '--paths', 'off', '--control', '127.0.0.1:9797'], { prefix: inNs(), timeoutMs: 10_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--control 127\.0\.0\.1:9797: the address is already in use/);
  });

  test("the config file's control.port: not moved either; the proxy runs and the warning names the setting", async () => {
    // 9797 is the default, so a file naming it is indistinguishable from no choice; a file naming
    // another port, busy, is a choice.
    const busy = ns.spawn([process.execPath, '-e', "require('net').createServer().listen(9798, '127.0.0.1', () => console.log('ready'))"], { label: 'port 9798 holder' });
    await busy.waitForLine(/^ready$/, 10_000);
    const file = path.join(tmp, 'control-port.json');
    fs.writeFileSync(file, JSON.stringify({ control: { port: 9798 } }));
    const p = await startProcess(process.execPath, [CLI_PATH, 'up', '--port', '0', '--paths', 'off', '--config', file], { prefix: inNs(), ready: LISTENING_LINE });
    try {
      // stderr is its own pipe: the warning may arrive just after the listening line.
      for (let i = 0; i < 30 && !/control\.port/.test(p.stderr()); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(p.stderr(), /127\.0\.0\.1:9798 \(from the config file's control\.port\) is already in use/);
      assert.doesNotMatch(p.stdout(), /control API on/);
    } finally {
      await p.stop();
      await busy.stop();
    }
  });
});

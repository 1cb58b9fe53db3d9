/**
 * No secret in the process list (issue 11, point 8): /proc/PID/cmdline is readable by every local
 * user, so the recommended ways to give `braid up` a relay link (--relay-file, --relay - on
 * standard input, the config file, the dashboard's import) and `braid relay` its secret
 * (--secret-file, BRAID_RELAY_SECRET) keep it out of argv; the old ways still work, with a warning.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { formatRelayLink, parseRelayLink } from '../electron/core/relay/share-link';
import { callOk, CONTROL_LINE, parseControlLine } from './helpers/control-client';
import { CLI_PATH, LISTENING_LINE, runBraid, runProcess, startProcess, type Running } from './helpers/proc';

const ARGV_WARNING = /on the command line is visible to every local user in the process list/;

let tmp: string;
// Starts with '-' on purpose, as 1 in 64 random base64url secrets does.
const secret = `-${crypto.randomBytes(24).toString('base64url').slice(1)}`;
// A relay nobody runs: `braid up` starts with it (the pool fails in the background), which is all
// these tests need: where the link came from, and what the process list shows.
const link = formatRelayLink({ host: '127.0.0.1', port: 9, secret, pin: crypto.randomBytes(32).toString('base64url'), name: 'test' });

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-secrets-'));
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function cmdline(pid: number): string {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
}

function writeSecretFile(name: string, content: string, mode: number): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, content, { mode });
  fs.chmodSync(file, mode);
  return file;
}

/** Waits (bounded) for stderr to settle: it is a separate pipe from the ready line on stdout. */
async function settledStderr(p: Running, re: RegExp): Promise<string> {
  for (let i = 0; i < 20 && !re.test(p.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
  return p.stderr();
}

const UP = ['up', '--port', '0', '--paths', 'off', '--control', 'off'];

describe('braid up: the relay link', () => {
  test('--relay-file FILE: the link is used, and the secret is not in /proc/PID/cmdline', async () => {
    const file = writeSecretFile('link', `\n${link}\n`, 0o600);
    const p = await startProcess(process.execPath, [CLI_PATH, ...UP, '--relay-file', file], { ready: LISTENING_LINE });
    try {
      assert.match(p.stdout(), /via relay 127\.0\.0\.1/);
      const argv = cmdline(p.child.pid!);
      assert.ok(argv.includes('--relay-file'), argv);
      assert.ok(!argv.includes(secret), `the secret is in the process list: ${argv}`);
      assert.doesNotMatch(await settledStderr(p, ARGV_WARNING), ARGV_WARNING);
      assert.doesNotMatch(p.stderr(), /readable by other users/);
    } finally {
      await p.stop();
    }
  });

  test('--relay-file with a file other users can read: a warning to chmod 600 it', async () => {
    const file = writeSecretFile('link-644', link, 0o644);
    const p = await startProcess(process.execPath, [CLI_PATH, ...UP, '--relay-file', file], { ready: LISTENING_LINE });
    try {
      assert.match(await settledStderr(p, /chmod/), new RegExp(`${file} is readable by other users and holds a secret: chmod 600`));
    } finally {
      await p.stop();
    }
  });

  test('--relay - reads the link from standard input', async () => {
    const child = spawn(process.execPath, [CLI_PATH, ...UP, '--relay', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    try {
      child.stdin.end(`${link}\n`);
      for (let i = 0; i < 200 && !LISTENING_LINE.test(out) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(out, /via relay 127\.0\.0\.1/, err);
      assert.ok(!cmdline(child.pid!).includes(secret));
      assert.doesNotMatch(err, ARGV_WARNING);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });

  test('--relay - with nothing on standard input is a usage error', async () => {
    const r = await runProcess(process.execPath, [CLI_PATH, ...UP, '--relay', '-'], { input: Buffer.alloc(0), timeoutMs: 10_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--relay -: nothing on standard input/);
  });

  test('--relay LINK still works, with one warning naming the ways that keep the secret out of ps', async () => {
    const p = await startProcess(process.execPath, [CLI_PATH, ...UP, '--relay', link], { ready: LISTENING_LINE });
    try {
      assert.match(p.stdout(), /via relay 127\.0\.0\.1/);
      const stderr = await settledStderr(p, ARGV_WARNING);
      assert.equal(stderr.split('\n').filter((l) => ARGV_WARNING.test(l)).length, 1, stderr);
      assert.match(stderr, /--relay-file FILE, --relay - \(standard input\), relay\.link in the config file or the dashboard's import/);
    } finally {
      await p.stop();
    }
  });

  test('--relay and --relay-file together: a usage error', async () => {
    const r = await runBraid([...UP, '--relay', link, '--relay-file', '/dev/null'], { timeoutMs: 10_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--relay and --relay-file/);
  });

  test("the dashboard's import saves the link to the config file with mode 0600; a readable config file holding one is warned about", async () => {
    const config = path.join(tmp, 'import', 'config.json');
    const p = await startProcess(process.execPath, [CLI_PATH, 'up', '--port', '0', '--paths', 'off', '--control', '127.0.0.1:0', '--config', writeConfig(config)], { ready: CONTROL_LINE });
    try {
      await callOk(parseControlLine(p.stdout())!, 'relay.import', { link });
      assert.equal(fs.statSync(config).mode & 0o777, 0o600);
      assert.equal(parseRelayLink(JSON.parse(fs.readFileSync(config, 'utf8')).relay.link).secret, secret);
    } finally {
      await p.stop();
    }
    fs.chmodSync(config, 0o644);
    const again = await startProcess(process.execPath, [CLI_PATH, ...UP, '--config', config], { ready: LISTENING_LINE });
    try {
      assert.match(again.stdout(), /via relay 127\.0\.0\.1/);
      assert.match(await settledStderr(again, /chmod/), new RegExp(`${config} holds the relay link's secret and is readable by other users: chmod 600`));
    } finally {
      await again.stop();
    }
  });
});

function writeConfig(file: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '{}\n', { mode: 0o600 });
  return file;
}

describe('braid relay: its secret', () => {
  // Starts with '-' on purpose, as 1 in 64 random ones does (`--secret S` once took it for an option).
  const relaySecret = `-${crypto.randomBytes(24).toString('base64url').slice(1)}`;
  const RELAY = (dir: string): string[] => [CLI_PATH, 'relay', '--listen', '127.0.0.1:0', '--metrics', 'off', '--dir', path.join(tmp, dir)];
  const SHARE_LINE = /^braid: share link: (\S+)$/m;

  test('--secret-file FILE: used, not in /proc/PID/cmdline, no warning', async () => {
    const file = writeSecretFile('relay-secret', `${relaySecret}\n`, 0o600);
    const p = await startProcess(process.execPath, [...RELAY('r1'), '--secret-file', file], { ready: SHARE_LINE });
    try {
      assert.equal(parseRelayLink(p.match![1]!).secret, relaySecret);
      assert.ok(!cmdline(p.child.pid!).includes(relaySecret));
      assert.doesNotMatch(await settledStderr(p, ARGV_WARNING), ARGV_WARNING);
    } finally {
      await p.stop();
    }
  });

  test('BRAID_RELAY_SECRET: used, no warning', async () => {
    const p = await startProcess(process.execPath, RELAY('r2'), { ready: SHARE_LINE, env: { ...process.env, BRAID_RELAY_SECRET: relaySecret } });
    try {
      assert.equal(parseRelayLink(p.match![1]!).secret, relaySecret);
      assert.doesNotMatch(await settledStderr(p, ARGV_WARNING), ARGV_WARNING);
    } finally {
      await p.stop();
    }
  });

  test('--secret S: works, with a warning naming --secret-file and BRAID_RELAY_SECRET', async () => {
    const p = await startProcess(process.execPath, [...RELAY('r3'), '--secret', relaySecret], { ready: SHARE_LINE });
    try {
      assert.equal(parseRelayLink(p.match![1]!).secret, relaySecret);
      assert.match(await settledStderr(p, ARGV_WARNING), /--secret on the command line is visible to every local user.*use --secret-file FILE or the BRAID_RELAY_SECRET environment variable instead/);
    } finally {
      await p.stop();
    }
  });

  test('a bad secret file is a usage error naming the file', async () => {
    const file = writeSecretFile('short-secret', 'short\n', 0o600);
    const r = await runBraid(['relay', '--listen', '127.0.0.1:0', '--metrics', 'off', '--dir', path.join(tmp, 'r4'), '--secret-file', file], { timeoutMs: 10_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`--secret-file ${file}: the secret must be 16-128 characters`));
    assert.equal(fs.existsSync(path.join(tmp, 'r4')), false);
  });
});

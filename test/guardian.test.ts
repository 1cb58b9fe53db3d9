/**
 * The guardian: whatever Braid changed on the system is put back after any death of the process
 * that changed it, with nothing started again, and every later start reports it once.
 *
 * End to end through the real CLI (`braid up --system-proxy`) against the real gsettings with its
 * keyfile backend in a throwaway XDG_CONFIG_HOME (never anyone's desktop settings). MPTCP endpoints
 * are covered by test/paths.test.ts (same mechanism, in a namespace); the record helpers here.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { claim, guardianDir, ownedByThisProcess, ownerAlive, writeRecord } from '../electron/core/guardian/record';
import { recoverLeftovers } from '../electron/core/guardian/recover';
import { runBraid, runProcess, startBraid, within, type BraidProxy } from './helpers/proc';

const ROOT = 'org.gnome.system.proxy';
let tmp: string;
let env: NodeJS.ProcessEnv;
let stateDir: string;
const running: BraidProxy[] = [];

async function gs(...args: string[]): Promise<string> {
  const r = await runProcess('gsettings', args, { env, timeoutMs: 10_000 });
  assert.equal(r.code, 0, `gsettings ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.toString().trim();
}

/** The user's own settings before Braid: a manual proxy of theirs, so a reset to defaults fails. */
async function presetUser(): Promise<string> {
  await gs('set', ROOT, 'mode', 'manual');
  await gs('set', `${ROOT}.http`, 'host', 'corp-proxy.example');
  await gs('set', `${ROOT}.http`, 'port', '3128');
  return userView();
}

async function userView(): Promise<string> {
  return [await gs('get', ROOT, 'mode'), await gs('get', `${ROOT}.http`, 'host'), await gs('get', `${ROOT}.http`, 'port'), await gs('get', `${ROOT}.socks`, 'host')].join(' ');
}

async function up(extra: string[] = [], envOver: NodeJS.ProcessEnv = {}): Promise<BraidProxy> {
  const b = await startBraid(['up', '--port', '0', '--paths', 'off', '--control', 'off', '--state-dir', stateDir, ...extra], { env: { ...env, ...envOver }, timeoutMs: 20_000 });
  running.push(b);
  return b;
}


function guardianLog(): string {
  try {
    return fs.readFileSync(path.join(guardianDir(stateDir), 'guardian.log'), 'utf8');
  } catch {
    return '(no guardian log)';
  }
}

/** The guardian watching `pid`: its process group (sh and cat, or node once it runs). */
function guardianOf(pid: number): number | null {
  for (const p of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const argv = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('--owner');
      // `sh -c … braid-guardian …` while it waits, then the Node process it execs.
      const isGuardian = argv.includes('braid-guardian') || argv.some((a) => a.endsWith(path.join('guardian', 'main.js')));
      if (isGuardian && i > 0 && argv[i + 1] === String(pid)) return Number(p);
    } catch {
      /* gone */
    }
  }
  return null;
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-guardian-'));
  env = { ...process.env, GSETTINGS_BACKEND: 'keyfile', XDG_CONFIG_HOME: path.join(tmp, 'xdg') };
  stateDir = path.join(tmp, 'state');
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((b) => b.stop('SIGTERM', 3000)));
  // Let guardians of this test finish before the directory goes.
  await new Promise((r) => setTimeout(r, 300));
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('braid up --system-proxy and its guardian (real gsettings, keyfile backend)', () => {
  test('says what it changed; after SIGKILL the guardian restores within 3 s; the next start reports it once', async (t) => {
    const mine = await presetUser();
    const b = await up(['--system-proxy']);
    assert.match(b.stdout(), new RegExp(`changed on this system[^\\n]*\\n.*system proxy \\(gnome\\) points at 127\\.0\\.0\\.1:${b.port}`));
    assert.equal(await gs('get', ROOT, 'mode'), "'manual'");
    assert.equal(await gs('get', `${ROOT}.socks`, 'port'), String(b.port));
    assert.ok(guardianOf(b.child.pid!), 'a guardian watches braid up');

    b.child.kill('SIGKILL');
    await b.exited;
    const took = await within(3000, async () => (await userView()) === mine);
    assert.notEqual(took, null, `not restored within 3 s; guardian log:\n${guardianLog()}`);
    t.diagnostic(`restored ${took} ms after SIGKILL`);
    // Its log line follows the restore (and the note for the next start follows the log line).
    const logged = new RegExp(`owner ${b.child.pid}: system proxy \\(gnome\\): your previous settings are back`);
    assert.notEqual(await within(3000, async () => logged.test(guardianLog()) && !guardianOf(b.child.pid!)), null, guardianLog());

    // `braid status` is a start too: it reports what the guardian did, once (no braid runs: it then fails).
    const s1 = await runBraid(['status', '--state-dir', stateDir]);
    assert.match(s1.stderr, new RegExp(`a previous Braid \\(pid ${b.child.pid}\\) ended without cleaning up \\(its guardian did this at [^)]+\\): system proxy \\(gnome\\): your previous settings are back`));
    const s2 = await runBraid(['status', '--state-dir', stateDir]);
    assert.doesNotMatch(s2.stderr, /ended without cleaning up/);
    assert.equal(await userView(), mine);
  });

  test('with no guardian left (a power cut), a plain `braid up` restores the system proxy first and says so once', async () => {
    const mine = await presetUser();
    const b = await up(['--system-proxy'], { BRAID_GUARDIAN: 'off' });
    b.child.kill('SIGKILL');
    await b.exited;
    await new Promise((r) => setTimeout(r, 300));
    assert.notEqual(await userView(), mine, 'nothing may have restored it yet');

    const plain = await up();
    assert.match(plain.stderr(), new RegExp(`a previous Braid \\(pid ${b.child.pid}\\) ended without cleaning up: system proxy \\(gnome\\): your previous settings are back`));
    assert.equal(await userView(), mine);
    await plain.stop('SIGTERM', 5000);
    const again = await up();
    assert.doesNotMatch(again.stderr(), /ended without cleaning up/);
  });

  test('a guardian killed while Braid runs is started again, and still restores after SIGKILL', async () => {
    const mine = await presetUser();
    const b = await up(['--system-proxy']);
    const g = guardianOf(b.child.pid!);
    assert.ok(g);
    process.kill(-g, 'SIGKILL'); // its whole group: sh and the cat it waits on
    const respawned = await within(3000, async () => {
      const n = guardianOf(b.child.pid!);
      return n !== null && n !== g;
    });
    assert.notEqual(respawned, null, b.stderr());
    assert.notEqual(await within(2000, async () => /guardian: it exited while Braid runs; starting it again/.test(b.stderr())), null, b.stderr());
    b.child.kill('SIGKILL');
    await b.exited;
    assert.notEqual(await within(3000, async () => (await userView()) === mine), null, guardianLog());
  });

  test('SIGTERM restores in-process; the guardian then finds nothing to do', async () => {
    const mine = await presetUser();
    const b = await up(['--system-proxy']);
    const r = await b.stop('SIGTERM', 10_000);
    assert.equal(r.code, 0, b.stderr());
    assert.equal(await userView(), mine);
    await new Promise((r2) => setTimeout(r2, 500));
    assert.doesNotMatch(guardianLog(), /your previous settings are back/);
    const s = await runBraid(['status', '--state-dir', stateDir]);
    assert.doesNotMatch(s.stderr, /ended without cleaning up/);
  });
});

describe('guardian records', () => {
  const quiet = { info: () => {}, warn: () => {} };

  test('a claim is exclusive while its holder lives, and taken over once the holder is dead', () => {
    const dir = guardianDir(stateDir);
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'x.json');
    const release = claim(file);
    assert.ok(release);
    assert.equal(claim(file), null, 'a second claim while the first holder lives');
    release!();
    // A claim left by a process that no longer exists is stale.
    fs.writeFileSync(`${file}.lock`, JSON.stringify({ ...ownedByThisProcess('lock'), pid: 2 ** 22 + 1 }));
    const taken = claim(file);
    assert.ok(taken, 'a dead holder\'s claim is taken over');
    taken!();
  });

  test('an owner from another boot, or whose pid was reused, is dead; this process is alive', () => {
    const me = ownedByThisProcess('x');
    assert.equal(ownerAlive(me), true);
    assert.equal(ownerAlive({ ...me, bootId: '00000000-0000-0000-0000-000000000000' }), false);
    assert.equal(ownerAlive({ ...me, pid: 1, pidStartTime: '1' }), false, 'pid 1 did not start at tick 1');
    assert.equal(ownerAlive(me, { exitedPid: process.pid }), false);
  });

  test('a record of an unknown kind stays put and is reported; an unusable one is set aside', async () => {
    const dir = guardianDir(stateDir);
    const unknown = path.join(dir, 'future-kind.json');
    writeRecord(unknown, { ...ownedByThisProcess('future-kind'), pid: 2 ** 22 + 1 });
    fs.writeFileSync(path.join(dir, 'broken.json'), '{"kind": "system-pro');
    const warnings: string[] = [];
    const done = await recoverLeftovers(stateDir, { log: { ...quiet, warn: (m) => void warnings.push(m) } });
    assert.deepEqual(done.map((r) => [r.kind, r.ok]), [['future-kind', false]]);
    assert.match(done[0]!.message, /unknown kind 'future-kind'/);
    assert.ok(fs.existsSync(unknown));
    assert.ok(fs.readdirSync(dir).some((f) => f.startsWith('broken.json.bad-')));
    assert.ok(warnings.some((w) => /broken\.json is not a usable record/.test(w)), warnings.join('\n'));
  });
});

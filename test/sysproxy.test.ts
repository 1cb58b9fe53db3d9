/**
 * The system proxy against the real `gsettings` binary. GSETTINGS_BACKEND=keyfile with a temporary
 * XDG_CONFIG_HOME confines every read and write to a throwaway keyfile: the user's (and CI's) own
 * settings are never touched. Needs the Debian packages libglib2.0-bin and gsettings-desktop-schemas.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import type { ProxySettings } from '../electron/core/sysproxy/backend';
import { detectBackend } from '../electron/core/sysproxy/detect';
import { runTool } from '../electron/core/sysproxy/exec';
import { GnomeBackend } from '../electron/core/sysproxy/gnome';
import { JOURNAL_FILE, JournalRecord, readJournal, writeJournal } from '../electron/core/sysproxy/journal';
import { SystemProxyManager } from '../electron/core/sysproxy/manager';
import { Running, runProcess, startProcess, within } from './helpers/proc';

const CHILD = path.join(__dirname, 'helpers', 'sysproxy-child.js');
const ROOT = 'org.gnome.system.proxy';

let tmp: string;
let env: NodeJS.ProcessEnv;
let stateDir: string;
let journal: string;
const children: Running[] = [];
const logs: string[] = [];
const log = { info: (m: string) => void logs.push(`info: ${m}`), warn: (m: string) => void logs.push(`warn: ${m}`) };

async function gs(...args: string[]): Promise<string> {
  const r = await runProcess('gsettings', args, { env, timeoutMs: 10_000 });
  assert.equal(r.code, 0, `gsettings ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.toString().trim();
}

/** Every key of every proxy schema, as text: a restore must give back exactly this. */
async function everything(): Promise<string> {
  const parts: string[] = [];
  for (const schema of [ROOT, `${ROOT}.http`, `${ROOT}.https`, `${ROOT}.ftp`, `${ROOT}.socks`]) parts.push(await gs('list-recursively', schema));
  return parts.join('\n');
}

/** A user with a manual proxy of their own, unusual characters included, to prove restore is exact. */
async function presetUserSettings(): Promise<void> {
  await gs('set', ROOT, 'mode', 'manual');
  await gs('set', ROOT, 'ignore-hosts', "['intranet.example', '10.0.0.0/8', 'it\\'s']");
  await gs('set', `${ROOT}.http`, 'host', "corp-proxy.example");
  await gs('set', `${ROOT}.http`, 'port', '3128');
  await gs('set', `${ROOT}.https`, 'host', "'odd \\\\ host'");
  await gs('set', `${ROOT}.https`, 'port', '3129');
  await gs('set', `${ROOT}.socks`, 'host', "''");
  await gs('set', `${ROOT}.socks`, 'port', '0');
}

function manager(backend = new GnomeBackend({ env })): SystemProxyManager {
  return new SystemProxyManager({ backend, stateDir, log });
}

function guardianLog(): string {
  try {
    return fs.readFileSync(path.join(path.dirname(journal), 'guardian.log'), 'utf8');
  } catch {
    return '(no guardian log)';
  }
}

const BRAID: ProxySettings = { host: '127.0.0.1', port: 1080, bypass: ['localhost', '127.0.0.0/8'] };

async function assertBraidApplied(port: number): Promise<void> {
  assert.equal(await gs('get', ROOT, 'mode'), "'manual'");
  for (const s of ['http', 'https', 'socks']) {
    assert.equal(await gs('get', `${ROOT}.${s}`, 'host'), "'127.0.0.1'", s);
    assert.equal(await gs('get', `${ROOT}.${s}`, 'port'), String(port), s);
  }
  assert.equal(await gs('get', ROOT, 'ignore-hosts'), "['localhost', '127.0.0.0/8']");
}

/** A child holding the system proxy; `guardian: false` simulates a power cut (nothing outlives it). */
function child(mode: string, extra: string[] = [], opts: { guardian?: boolean } = {}): Promise<Running> {
  const childEnv = opts.guardian === false ? { ...env, BRAID_GUARDIAN: 'off' } : env;
  return startProcess(process.execPath, [CHILD, '--state', stateDir, '--mode', mode, ...extra], { env: childEnv, ready: /^enabled$/m, timeoutMs: 20_000 }).then((r) => {
    children.push(r);
    return r;
  });
}


async function recoverInChild(): Promise<string> {
  const r = await runProcess(process.execPath, [CHILD, '--state', stateDir, '--mode', 'recover'], { env, timeoutMs: 20_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.toString().trim();
}

before(async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-gs-probe-'));
  try {
    env = { ...process.env, GSETTINGS_BACKEND: 'keyfile', XDG_CONFIG_HOME: base };
    const r = await runProcess('gsettings', ['list-keys', ROOT], { env, timeoutMs: 10_000 });
    assert.ok(
      r.code === 0 && /\bmode\b/.test(r.stdout.toString()),
      `gsettings with the ${ROOT} schema is required (apt-get install libglib2.0-bin gsettings-desktop-schemas): ${r.stderr}`,
    );
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-sysproxy-'));
  env = { ...process.env, GSETTINGS_BACKEND: 'keyfile', XDG_CONFIG_HOME: path.join(tmp, 'config') };
  stateDir = path.join(tmp, 'state');
  journal = path.join(stateDir, JOURNAL_FILE);
  logs.length = 0;
});

afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.stop('SIGKILL', 1000)));
  fs.rmSync(tmp, { recursive: true, force: true });
});

after(async () => {
  await Promise.all(children.splice(0).map((c) => c.stop('SIGKILL', 1000)));
});

describe('system proxy with real gsettings (keyfile backend)', () => {
  test('the keyfile backend really is isolated: a change lands in the temporary keyfile', async () => {
    await gs('set', ROOT, 'mode', 'manual');
    const keyfile = fs.readFileSync(path.join(tmp, 'config', 'glib-2.0', 'settings', 'keyfile'), 'utf8');
    assert.match(keyfile, /\[system\/proxy\][^[]*mode='manual'/);
  });

  test('enable sets Braid everywhere; disable gives back exactly the user\'s own manual proxy', async () => {
    await presetUserSettings();
    const before = await everything();
    assert.match(before, /corp-proxy\.example/);

    const m = manager();
    await m.enable(BRAID);
    await assertBraidApplied(1080);
    const rec = readJournal(journal)!;
    assert.equal(rec.backend, 'gnome');
    assert.equal(rec.phase, 'applied');
    assert.equal(rec.pid, process.pid);
    assert.deepEqual(rec.settings, BRAID);
    assert.equal((rec.previous.values as Record<string, string>)[`${ROOT}.http host`], "'corp-proxy.example'");
    assert.equal(m.active, true);

    assert.equal(await m.disable(), 'restored');
    assert.equal(await everything(), before);
    assert.equal(fs.existsSync(journal), false);
    assert.equal(m.active, false);
    assert.equal(await m.disable(), 'none');
  });

  test('enabling twice keeps the user\'s settings as the ones to restore, not Braid\'s first ones', async () => {
    await presetUserSettings();
    const before = await everything();
    const m = manager();
    await m.enable(BRAID);
    await m.enable({ ...BRAID, port: 1081 });
    await assertBraidApplied(1081);
    const rec = readJournal(journal)!;
    assert.equal((rec.previous.values as Record<string, string>)[`${ROOT}.http port`], '3128');
    assert.equal(await m.disable(), 'restored');
    assert.equal(await everything(), before);
  });

  test('a user who never set a proxy gets the defaults back', async () => {
    const before = await everything();
    const m = manager();
    await m.enable(BRAID);
    assert.notEqual(await everything(), before);
    await m.disable();
    assert.equal(await everything(), before);
  });

  test('a failing apply puts the previous settings back and leaves no journal', async () => {
    await presetUserSettings();
    const before = await everything();
    class HalfApply extends GnomeBackend {
      override async apply(s: ProxySettings): Promise<void> {
        await super.apply(s);
        throw Object.assign(new Error('simulated failure after writing'), { code: 'ESIMULATED' });
      }
    }
    const m = manager(new HalfApply({ env }));
    await assert.rejects(m.enable(BRAID), (err: Error & { code?: string }) => err.code === 'ESYSPROXY_APPLY' && /simulated failure/.test(err.message));
    assert.equal(await everything(), before);
    assert.equal(fs.existsSync(journal), false);
    assert.equal(m.active, false);
  });

  test('bad settings are refused before anything changes', async () => {
    const before = await everything();
    const m = manager();
    for (const bad of [{ ...BRAID, host: '0.0.0.0' }, { ...BRAID, port: 0 }, { ...BRAID, bypass: ['a,b'] }, { ...BRAID, host: "x'y" }]) {
      await assert.rejects(m.enable(bad), (err: Error & { code?: string }) => err.code === 'ESYSPROXY_SETTINGS');
    }
    assert.equal(await everything(), before);
    assert.equal(fs.existsSync(journal), false);
  });

  test('the user changing the proxy while Braid is on: disable leaves their choice alone', async () => {
    await presetUserSettings();
    const m = manager();
    await m.enable(BRAID);
    await gs('set', ROOT, 'mode', 'none');
    const theirs = await everything();
    assert.equal(await m.disable(), 'kept-user-settings');
    assert.equal(await everything(), theirs);
    assert.equal(fs.existsSync(journal), false);
    assert.ok(logs.some((l) => /changed outside Braid/.test(l)), logs.join('\n'));
  });
});

describe('crash and signal recovery with real gsettings', () => {
  test('kill -9: the guardian restores the user\'s settings within 3 s, with nothing started again', async () => {
    await presetUserSettings();
    const before = await everything();
    const c = await child('hold');
    await assertBraidApplied(1080);
    const r = await c.stop('SIGKILL');
    assert.equal(r.signal, 'SIGKILL');
    const took = await within(3000, async () => (await everything()) === before && !fs.existsSync(journal));
    assert.notEqual(took, null, `not restored within 3 s: ${await everything()}\nguardian log: ${guardianLog()}`);
    // The next start has nothing left to do.
    assert.equal(await recoverInChild(), 'none');
  });

  test('kill -9 with no guardian (a power cut): the settings stay until the next start restores them', async () => {
    await presetUserSettings();
    const before = await everything();
    const c = await child('hold', [], { guardian: false });
    await assertBraidApplied(1080);
    await c.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    await assertBraidApplied(1080);
    const rec = readJournal(journal)!;
    assert.equal(rec.pid, c.child.pid);
    assert.equal(rec.phase, 'applied');

    assert.equal(await recoverInChild(), 'restored');
    assert.equal(await everything(), before);
    assert.equal(fs.existsSync(journal), false);
    // A second start finds nothing to do.
    assert.equal(await recoverInChild(), 'none');
  });

  test('after a crash, a proxy the user set themselves since is left alone and the journal dropped', async () => {
    await presetUserSettings();
    const c = await child('hold', [], { guardian: false });
    await c.stop('SIGKILL');
    await gs('set', `${ROOT}.http`, 'host', 'new-choice.example');
    await gs('set', `${ROOT}.http`, 'port', '8888');
    const theirs = await everything();

    assert.equal(await manager().recoverAfterCrash(), 'kept-user-settings');
    assert.equal(await everything(), theirs);
    assert.equal(await gs('get', `${ROOT}.http`, 'host'), "'new-choice.example'");
    assert.equal(fs.existsSync(journal), false);
    assert.ok(logs.some((l) => /^warn: .*changed outside Braid/.test(l)), logs.join('\n'));
  });

  test('the guardian too leaves alone a proxy the user chose while Braid ran', async () => {
    await presetUserSettings();
    const c = await child('hold');
    await gs('set', `${ROOT}.http`, 'host', 'new-choice.example');
    const theirs = await everything();
    await c.stop('SIGKILL');
    assert.notEqual(await within(3000, async () => !fs.existsSync(journal)), null, guardianLog());
    assert.equal(await everything(), theirs);
  });

  test('a journal whose owner is still running is left alone, and a second enable is refused', async () => {
    await presetUserSettings();
    const c = await child('hold');
    const m = manager();
    assert.equal(await m.recoverAfterCrash(), 'owned-by-live-process');
    await assertBraidApplied(1080);
    await assert.rejects(m.enable({ ...BRAID, port: 2000 }), (err: Error & { code?: string }) => err.code === 'ESYSPROXY_BUSY');
    await assertBraidApplied(1080);
    assert.ok(fs.existsSync(journal));
    await c.stop('SIGKILL');
  });

  test('a crash in the middle of applying restores even though the settings are not all Braid\'s', async () => {
    await presetUserSettings();
    const before = await everything();
    const previous = await new GnomeBackend({ env }).read();
    // Only part of Braid's settings got written before the crash.
    await gs('set', `${ROOT}.http`, 'host', '127.0.0.1');
    await gs('set', `${ROOT}.http`, 'port', '1080');
    const rec: JournalRecord = {
      kind: 'system-proxy',
      version: 1,
      backend: 'gnome',
      phase: 'applying',
      pid: 2 ** 22 + 1, // above Linux's pid_max: no such process
      pidStartTime: null,
      writtenAt: new Date().toISOString(),
      previous,
      settings: BRAID,
      applied: null,
    };
    writeJournal(journal, rec);
    assert.equal(await manager().recoverAfterCrash(), 'restored');
    assert.equal(await everything(), before);
    assert.equal(fs.existsSync(journal), false);
  });

  test('an unreadable journal is set aside with a warning instead of blocking every start', async () => {
    fs.mkdirSync(path.dirname(journal), { recursive: true });
    fs.writeFileSync(journal, '{"version": 1, "backend": "gno');
    assert.equal(await manager().recoverAfterCrash(), 'none');
    assert.equal(fs.existsSync(journal), false);
    assert.ok(fs.readdirSync(path.dirname(journal)).some((f) => f.startsWith(`${path.basename(JOURNAL_FILE)}.bad-`)));
    assert.ok(logs.some((l) => /^warn: .*not valid JSON/.test(l)), logs.join('\n'));
  });

  test('SIGTERM: restored before the process exits, which then dies of SIGTERM as usual', async () => {
    await presetUserSettings();
    const before = await everything();
    // A wildcard listener: the system proxy must point at loopback instead.
    const c = await child('hooks', ['--host', '0.0.0.0']);
    await assertBraidApplied(1080);
    const r = await c.stop('SIGTERM', 15_000);
    assert.equal(r.signal, 'SIGTERM', c.stderr());
    assert.equal(await everything(), before);
    assert.equal(fs.existsSync(journal), false);
  });

  test('SIGINT likewise', async () => {
    await presetUserSettings();
    const before = await everything();
    const c = await child('hooks');
    const r = await c.stop('SIGINT', 15_000);
    assert.equal(r.signal, 'SIGINT', c.stderr());
    assert.equal(await everything(), before);
    assert.equal(fs.existsSync(journal), false);
  });

  test('another SIGTERM listener exiting at once, before the restore: the guardian finishes it within 3 s', async () => {
    await presetUserSettings();
    const before = await everything();
    const c = await child('hooks-other');
    await assertBraidApplied(1080);
    const r = await c.stop('SIGTERM', 20_000);
    assert.equal(r.code, 0, c.stderr());
    assert.notEqual(await within(3000, async () => (await everything()) === before && !fs.existsSync(journal)), null, guardianLog());
  });
});

describe('restore when the process simply runs out of work', () => {
  test('beforeExit restores, and the process then exits 0 on its own', async () => {
    await presetUserSettings();
    const before = await everything();
    const r = await runProcess(process.execPath, [CHILD, '--state', stateDir, '--mode', 'hooks-idle'], { env, timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /^enabled$/m);
    // Logged by the in-process restore, not by the guardian (which logs to its own file).
    assert.match(r.stderr, /info: system proxy \(gnome\): previous settings restored/);
    assert.equal(await everything(), before);
    assert.equal(fs.existsSync(journal), false);
  });
});

describe('tools, errors and detection', () => {
  const code = (c: string, msg: RegExp) => (err: Error & { code?: string }) => err.code === c && msg.test(err.message);

  test('a missing tool, a failing tool and a hung tool each give a coded error naming the tool', async () => {
    await assert.rejects(runTool('braid-no-such-tool', ['x']), code('ESYSPROXY_TOOL_MISSING', /braid-no-such-tool is not installed/));
    await assert.rejects(runTool('gsettings', ['set', ROOT, 'mode', 'bogus'], { env }), code('ESYSPROXY_TOOL_FAILED', /^gsettings set org\.gnome\.system\.proxy mode bogus failed with exit code 1: .*valid range/));
    await assert.rejects(runTool('sleep', ['5'], { timeoutMs: 200 }), code('ESYSPROXY_TOOL_TIMEOUT', /sleep did not finish within 200 ms/));
  });

  test('detection picks gsettings here, and says plainly when there is nothing to use', async () => {
    assert.equal((await detectBackend({ platform: 'linux', env })).name, 'gnome');
    await assert.rejects(detectBackend({ platform: 'linux', env: { ...env, PATH: tmp } }), code('ESYSPROXY_UNSUPPORTED', /tried gnome, kde/));
  });
});

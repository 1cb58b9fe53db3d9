/**
 * KDE Plasma gets both its own proxy settings and GNOME's (which Firefox, Chromium and GTK apps on
 * KDE read), restored together, with the real tools: kreadconfig5/kwriteconfig5 (Debian's
 * libkf5config-bin) writing kioslaverc under a temporary XDG_CONFIG_HOME, and gsettings with its
 * keyfile backend in the same directory. Nothing of the user's (or CI's) own settings is touched.
 *
 * What is not here: a running Plasma session. KIO's reload signal (dbus-send) is best effort and
 * has no session bus to reach on this machine.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import type { ProxySettings, SystemProxyBackend } from '../electron/core/sysproxy/backend';
import { CompositeBackend } from '../electron/core/sysproxy/composite';
import { createBackend, detectBackend } from '../electron/core/sysproxy/detect';
import { onPath } from '../electron/core/sysproxy/exec';
import { GnomeBackend } from '../electron/core/sysproxy/gnome';
import { KDE_FILE, KDE_GROUP, KDE_KEYS, KdeBackend } from '../electron/core/sysproxy/kde';
import { JOURNAL_FILE, readJournal } from '../electron/core/sysproxy/journal';
import { SystemProxyManager } from '../electron/core/sysproxy/manager';
import { Running, runProcess, startProcess } from './helpers/proc';

const CHILD = path.join(__dirname, 'helpers', 'sysproxy-desktop-child.js');
const ROOT = 'org.gnome.system.proxy';
const BRAID: ProxySettings = { host: '127.0.0.1', port: 1080, bypass: ['localhost', '127.0.0.0/8'] };

const skip = !onPath('kwriteconfig5') || !onPath('kreadconfig5') || !onPath('gsettings')
  ? 'needs kreadconfig5/kwriteconfig5 (libkf5config-bin) and gsettings (libglib2.0-bin, gsettings-desktop-schemas): sudo bash .ci/install-deps'
  : undefined;

let tmp: string;
let env: NodeJS.ProcessEnv;
let stateDir: string;
let bin: string;
const children: Running[] = [];
const logs: string[] = [];
const log = { info: (m: string) => void logs.push(`info: ${m}`), warn: (m: string) => void logs.push(`warn: ${m}`) };

async function tool(cmd: string, ...args: string[]): Promise<string> {
  const r = await runProcess(cmd, args, { env, timeoutMs: 10_000 });
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.toString().replace(/\n$/, '');
}

const gs = (...args: string[]): Promise<string> => tool('gsettings', ...args);
const kwrite = (key: string, value: string): Promise<string> => tool('kwriteconfig5', '--file', KDE_FILE, '--group', KDE_GROUP, '--key', key, value);

/** The [Proxy Settings] group of kioslaverc as the file holds it (absent keys are absent). */
function kdeGroup(): Record<string, string> {
  let text = '';
  try {
    text = fs.readFileSync(path.join(tmp, 'config', KDE_FILE), 'utf8');
  } catch {
    return {};
  }
  const out: Record<string, string> = {};
  let inGroup = false;
  for (const line of text.split('\n')) {
    if (/^\[.*\]$/.test(line)) inGroup = line === `[${KDE_GROUP}]`;
    else if (inGroup && line.includes('=')) out[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
  }
  return out;
}

async function gnomeAll(): Promise<string> {
  const parts: string[] = [];
  for (const schema of [ROOT, `${ROOT}.http`, `${ROOT}.https`, `${ROOT}.socks`]) parts.push(await gs('list-recursively', schema));
  return parts.join('\n');
}

/** A user with manual proxies of their own on both sides; one KDE key never set (it must stay absent). */
async function presetUser(): Promise<void> {
  await kwrite('ProxyType', '1');
  await kwrite('httpProxy', 'http://corp-proxy.example 3128');
  await kwrite('httpsProxy', 'http://corp-proxy.example 3129');
  await kwrite('NoProxyFor', 'intranet.example,10.0.0.0/8');
  await kwrite('ReversedException', 'false');
  await gs('set', ROOT, 'mode', 'manual');
  await gs('set', `${ROOT}.http`, 'host', 'corp-proxy.example');
  await gs('set', `${ROOT}.http`, 'port', '3128');
  await gs('set', ROOT, 'ignore-hosts', "['intranet.example', 'it\\'s']");
}

function assertKdeIsBraid(): void {
  const g = kdeGroup();
  assert.equal(g.ProxyType, '1');
  assert.equal(g.httpProxy, 'http://127.0.0.1 1080');
  assert.equal(g.httpsProxy, 'http://127.0.0.1 1080');
  assert.equal(g.socksProxy, 'socks://127.0.0.1 1080');
  assert.equal(g.NoProxyFor, 'localhost,127.0.0.0/8');
}

async function assertGnomeIsBraid(): Promise<void> {
  assert.equal(await gs('get', ROOT, 'mode'), "'manual'");
  for (const s of ['http', 'https', 'socks']) {
    assert.equal(await gs('get', `${ROOT}.${s}`, 'host'), "'127.0.0.1'", s);
    assert.equal(await gs('get', `${ROOT}.${s}`, 'port'), '1080', s);
  }
}

/** A PATH of its own, so that a test can break one tool and mend it again. */
function linkTools(): void {
  fs.mkdirSync(bin, { recursive: true });
  for (const t of ['kreadconfig5', 'kwriteconfig5', 'gsettings']) {
    const real = (process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, t)).find((f) => fs.existsSync(f))!;
    fs.rmSync(path.join(bin, t), { force: true });
    fs.symlinkSync(real, path.join(bin, t));
  }
}

function breakTool(name: string): void {
  fs.rmSync(path.join(bin, name), { force: true });
  fs.writeFileSync(path.join(bin, name), '#!/bin/sh\necho "simulated failure of $0" >&2\nexit 1\n', { mode: 0o755 });
}

const composite = (): CompositeBackend => createBackend('kde+gnome', env) as CompositeBackend;
const manager = (backend: SystemProxyBackend = composite()): SystemProxyManager =>
  new SystemProxyManager({ backend, stateDir, log, backendFor: (name) => createBackend(name, env) });

describe('KDE: kioslaverc and gsettings together', { skip }, () => {
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-kde-'));
    bin = path.join(tmp, 'bin');
    linkTools();
    env = {
      ...process.env, PATH: `${bin}${path.delimiter}/usr/bin${path.delimiter}/bin`, HOME: tmp,
      GSETTINGS_BACKEND: 'keyfile', XDG_CONFIG_HOME: path.join(tmp, 'config'), XDG_CACHE_HOME: path.join(tmp, 'cache'),
      XDG_DATA_HOME: path.join(tmp, 'data'), XDG_CURRENT_DESKTOP: 'KDE', KDE_FULL_SESSION: 'true',
    };
    stateDir = path.join(tmp, 'state');
    logs.length = 0;
  });
  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => c.stop('SIGKILL', 1000)));
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  after(async () => {
    await Promise.all(children.splice(0).map((c) => c.stop('SIGKILL', 1000)));
  });

  test('the tools really write the temporary kioslaverc and keyfile', async () => {
    await kwrite('ProxyType', '1');
    await gs('set', ROOT, 'mode', 'manual');
    assert.equal(kdeGroup().ProxyType, '1');
    assert.match(fs.readFileSync(path.join(tmp, 'config', 'glib-2.0', 'settings', 'keyfile'), 'utf8'), /mode='manual'/);
  });

  test('detection: KDE with gsettings gets both; without gsettings, KDE alone; elsewhere GNOME', async () => {
    assert.equal((await detectBackend({ platform: 'linux', env })).name, 'kde+gnome');
    fs.rmSync(path.join(bin, 'gsettings'));
    assert.equal((await detectBackend({ platform: 'linux', env: { ...env, PATH: bin } })).name, 'kde');
    linkTools();
    assert.equal((await detectBackend({ platform: 'linux', env: { ...env, XDG_CURRENT_DESKTOP: 'GNOME', KDE_FULL_SESSION: '' } })).name, 'gnome');
  });

  test('enable sets both; disable gives both back exactly, a key the user never set absent again', async () => {
    await presetUser();
    const kdeBefore = kdeGroup();
    const gnomeBefore = await gnomeAll();
    assert.equal(kdeBefore.socksProxy, undefined);
    const m = manager();
    await m.enable(BRAID);
    assertKdeIsBraid();
    await assertGnomeIsBraid();
    const rec = readJournal(path.join(stateDir, JOURNAL_FILE))!;
    assert.equal(rec.backend, 'kde+gnome');
    assert.deepEqual(Object.keys(rec.previous.parts as object).sort(), ['gnome', 'kde'], 'the journal covers both');
    assert.equal(await m.disable(), 'restored');
    assert.deepEqual(kdeGroup(), kdeBefore);
    assert.equal(await gnomeAll(), gnomeBefore);
    assert.equal(fs.existsSync(path.join(stateDir, JOURNAL_FILE)), false);
  });

  test('a restore that fails for KDE still restores GNOME, keeps the journal, and finishes KDE later', async () => {
    await presetUser();
    const kdeBefore = kdeGroup();
    const gnomeBefore = await gnomeAll();
    const m = manager();
    await m.enable(BRAID);
    breakTool('kwriteconfig5');
    await assert.rejects(m.disable(), (err: Error & { code?: string }) =>
      err.code === 'ESYSPROXY_TOOL_FAILED' && /^restoring the system proxy failed for kde: .*simulated failure.* \(gnome restored\)$/.test(err.message));
    assert.equal(await gnomeAll(), gnomeBefore, 'GNOME was not restored because KDE failed');
    assertKdeIsBraid();
    assert.equal(readJournal(path.join(stateDir, JOURNAL_FILE))?.phase, 'restoring', 'the journal must stay for a retry');
    linkTools();
    assert.equal(await m.disable(), 'restored');
    assert.deepEqual(kdeGroup(), kdeBefore);
    assert.equal(await gnomeAll(), gnomeBefore);
  });

  test('a restore that fails for GNOME (gsettings broken, reads too) still restores KDE', async () => {
    await presetUser();
    const kdeBefore = kdeGroup();
    const gnomeBefore = await gnomeAll();
    const m = manager();
    await m.enable(BRAID);
    breakTool('gsettings');
    await assert.rejects(m.disable(), (err: Error & { code?: string }) => err.code === 'ESYSPROXY_TOOL_FAILED' && /for gnome: .*\(kde restored\)$/.test(err.message));
    assert.deepEqual(kdeGroup(), kdeBefore);
    linkTools();
    assert.equal(await m.disable(), 'restored');
    assert.equal(await gnomeAll(), gnomeBefore);
  });

  test('an apply that fails half-way (GNOME) puts KDE back too and leaves no journal', async () => {
    await presetUser();
    const kdeBefore = kdeGroup();
    const gnomeBefore = await gnomeAll();
    // A gsettings that refuses to write Braid's address, and only that: KDE is set by then.
    fs.rmSync(path.join(bin, 'gsettings'));
    const real = (process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, 'gsettings')).find((f) => fs.existsSync(f))!;
    fs.writeFileSync(path.join(bin, 'gsettings'), `#!/bin/sh\n[ "$1" = set ] && [ "$4" = "'127.0.0.1'" ] && { echo "simulated failure" >&2; exit 1; }\nexec ${real} "$@"\n`, { mode: 0o755 });
    await assert.rejects(manager().enable(BRAID), (err: Error & { code?: string }) => err.code === 'ESYSPROXY_APPLY' && /gnome: .*simulated failure/.test(err.message));
    assert.deepEqual(kdeGroup(), kdeBefore);
    assert.equal(await gnomeAll(), gnomeBefore);
    assert.equal(fs.existsSync(path.join(stateDir, JOURNAL_FILE)), false);
  });

  for (const changed of ['kde', 'gnome'] as const) {
    test(`the user changes only ${changed === 'kde' ? 'KDE' : 'GNOME'}'s proxy while Braid is on: that choice stays, the other is restored`, async () => {
      await presetUser();
      const kdeBefore = kdeGroup();
      const gnomeBefore = await gnomeAll();
      const m = manager();
      await m.enable(BRAID);
      if (changed === 'kde') await kwrite('httpProxy', 'http://new-choice.example 8080');
      else await gs('set', `${ROOT}.http`, 'host', 'new-choice.example');
      assert.equal(await m.disable(), 'restored');
      if (changed === 'kde') {
        assert.equal(kdeGroup().httpProxy, 'http://new-choice.example 8080', "the user's new KDE choice was overwritten");
        assert.equal(await gnomeAll(), gnomeBefore);
      } else {
        assert.equal(await gs('get', `${ROOT}.http`, 'host'), "'new-choice.example'", "the user's new GNOME choice was overwritten");
        assert.deepEqual(kdeGroup(), kdeBefore);
      }
    });
  }

  test('the user changes both: both choices stay and the journal goes', async () => {
    await presetUser();
    const m = manager();
    await m.enable(BRAID);
    await kwrite('ProxyType', '0');
    await gs('set', ROOT, 'mode', 'none');
    assert.equal(await m.disable(), 'kept-user-settings');
    assert.equal(kdeGroup().ProxyType, '0');
    assert.equal(await gs('get', ROOT, 'mode'), "'none'");
    assert.equal(fs.existsSync(path.join(stateDir, JOURNAL_FILE)), false);
  });

  test('kill -9 with both set: the next start restores both', async () => {
    await presetUser();
    const kdeBefore = kdeGroup();
    const gnomeBefore = await gnomeAll();
    const c = await startProcess(process.execPath, [CHILD, '--state', stateDir, '--port', '1090'], { env, ready: /^enabled /m, timeoutMs: 20_000 });
    children.push(c);
    assert.match(c.stdout(), /^enabled kde\+gnome$/m);
    assert.equal(kdeGroup().httpProxy, 'http://127.0.0.1 1090');
    assert.equal(await gs('get', `${ROOT}.http`, 'port'), '1090');
    await c.stop('SIGKILL', 1000);
    assert.equal(await manager().recoverAfterCrash(), 'restored');
    assert.deepEqual(kdeGroup(), kdeBefore);
    assert.equal(await gnomeAll(), gnomeBefore);
  });

  test('a part that cannot be read: nothing is changed, and the error names it', async () => {
    await presetUser();
    const kdeBefore = kdeGroup();
    breakTool('gsettings');
    await assert.rejects(manager().enable(BRAID), (err: Error & { code?: string }) => err.code === 'ESYSPROXY_APPLY' && /cannot read the current proxy settings of gnome \(.*simulated failure/.test(err.message));
    assert.deepEqual(kdeGroup(), kdeBefore);
    assert.equal(fs.existsSync(path.join(stateDir, JOURNAL_FILE)), false);
  });

  test('a snapshot that is not a set of desktops is refused before anything changes', async () => {
    await presetUser();
    const before = kdeGroup();
    await assert.rejects(composite().restore({ values: {} }), (err: Error & { code?: string }) => err.code === 'ESYSPROXY_BAD_SNAPSHOT');
    await assert.rejects(composite().restore({ parts: { kde: 'x' } }), (err: Error & { code?: string }) => err.code === 'ESYSPROXY_BAD_SNAPSHOT');
    assert.deepEqual(kdeGroup(), before);
  });

  test('each part stays a backend of its own: KDE alone and GNOME alone still restore exactly', async () => {
    await presetUser();
    const kdeBefore = kdeGroup();
    for (const b of [new KdeBackend({ env }), new GnomeBackend({ env })]) {
      const m = manager(b);
      await m.enable(BRAID);
      assert.equal(await m.disable(), 'restored');
    }
    assert.deepEqual(kdeGroup(), kdeBefore);
    assert.deepEqual(KDE_KEYS.filter((k) => k in kdeBefore).sort(), ['NoProxyFor', 'ProxyType', 'ReversedException', 'httpProxy', 'httpsProxy']);
  });
});

/**
 * The Electron glue without Electron's binary (it cannot be downloaded here): the glue type-checks
 * against electron's own typings; the window's security settings are what the checklist asks; the
 * compiled main, window and preload run against a recording stand-in for the 'electron' module (a
 * mock only because the real one cannot exist here) to prove the IPC sender check, the navigation
 * and window-open blocks, the app:// protocol with its CSP, the bridge's shape, and that quitting
 * stops the in-process core; and the electron-builder configuration passes electron-builder's own
 * schema validation.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import Module from 'node:module';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';
import { IPC, type StatusView } from '../electron/core/contract';
import { resolveAppRequest } from '../electron/core/desktop/app-protocol';
import { APP_ENTRY_URL, CONTENT_SECURITY_POLICY, isAppUrl, secureWebPreferences } from '../electron/core/desktop/security';
import { probeListening } from '../electron/core/sysproxy/journal';
import { runProcess } from './helpers/proc';

const ROOT = path.resolve(__dirname, '..', '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
// Inside node_modules so that the compiled files resolve 'ws' and find the package root as the real ones do.
const OUT = path.join(ROOT, 'node_modules', '.cache', `braid-glue-test-${process.pid}`);

describe('type-check against electron\'s typings', () => {
  test('tsc -p tsconfig.app.json --noEmit succeeds', async () => {
    const r = await runProcess(process.execPath, [TSC, '-p', path.join(ROOT, 'tsconfig.app.json'), '--noEmit'], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, `tsc failed:\n${r.stdout.toString()}\n${r.stderr}`);
  });

  test('the glue really is checked against electron.d.ts (it is in the program)', async () => {
    const r = await runProcess(process.execPath, [TSC, '-p', path.join(ROOT, 'tsconfig.app.json'), '--noEmit', '--listFilesOnly'], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stderr);
    const files = r.stdout.toString().split('\n');
    assert.ok(files.some((f) => f.endsWith('node_modules/electron/electron.d.ts')), 'electron.d.ts is part of the program');
    for (const f of ['main.ts', 'window.ts', 'preload.ts', 'tray.ts']) assert.ok(files.some((l) => l.endsWith(`electron/app/${f}`)), f);
  });
});

describe('window security settings', () => {
  test('isolated, sandboxed, no Node, web security on, no webview, the preload set', () => {
    const p = secureWebPreferences('/x/preload.js');
    assert.equal(p.contextIsolation, true);
    assert.equal(p.sandbox, true);
    assert.equal(p.nodeIntegration, false);
    assert.equal(p.nodeIntegrationInWorker, false);
    assert.equal(p.nodeIntegrationInSubFrames, false);
    assert.equal(p.webSecurity, true);
    assert.equal(p.allowRunningInsecureContent, false);
    assert.equal(p.webviewTag, false);
    assert.equal(p.preload, '/x/preload.js');
  });

  test('the CSP allows only the app\'s own scripts, styles, images and connections', () => {
    const d = new Map(CONTENT_SECURITY_POLICY.split(';').map((s) => s.trim().split(/\s+/)).map(([k, ...v]) => [k, v.join(' ')]));
    assert.equal(d.get('default-src'), "'self'");
    assert.equal(d.get('script-src'), "'self'");
    assert.equal(d.get('style-src'), "'self' 'unsafe-inline'");
    assert.equal(d.get('img-src'), "'self' data:");
    assert.equal(d.get('connect-src'), "'self'");
    assert.equal(d.get('object-src'), "'none'");
    assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe-eval|\*|http:|https:/);
  });

  test('only app://braid is the app\'s origin', () => {
    assert.equal(isAppUrl('app://braid/index.html'), true);
    assert.equal(isAppUrl('app://braid/'), true);
    for (const u of ['https://braid/', 'app://evil/index.html', 'app://braid.evil/', 'app://user:pw@braid/', 'file:///etc/passwd', 'javascript:alert(1)', '', null, 'not a url']) {
      assert.equal(isAppUrl(u), false, String(u));
    }
  });

  test('app:// serves files inside renderer/dist only', () => {
    const root = path.join(os.tmpdir(), 'r', 'dist');
    const ok = resolveAppRequest('app://braid/assets/index-abc.js', root);
    assert.deepEqual(ok, { ok: true, file: path.join(root, 'assets', 'index-abc.js'), contentType: 'text/javascript; charset=utf-8' });
    assert.deepEqual(resolveAppRequest('app://braid/', root), { ok: true, file: path.join(root, 'index.html'), contentType: 'text/html; charset=utf-8' });
    for (const u of ['app://braid/%2e%2e/%2e%2e/etc/passwd', 'app://braid/..%2f..%2fetc%2fpasswd', 'app://braid/a/../../../x']) {
      const r = resolveAppRequest(u, root);
      assert.ok(!r.ok || r.file.startsWith(root + path.sep), `${u} -> ${JSON.stringify(r)}`);
    }
    assert.equal(resolveAppRequest('app://other/index.html', root).ok, false);
    assert.equal(resolveAppRequest('app://braid/%E0%A4%A', root).ok, false);
    assert.equal(resolveAppRequest('app://braid/a%00b', root).ok, false);
  });
});

// ---- the compiled glue against a recording stand-in for 'electron' ------------------------------

type Fn = (...args: any[]) => any; // eslint-disable-line @typescript-eslint/no-explicit-any

class FakeWebContents {
  readonly events = new Map<string, Fn>();
  readonly sent: [string, unknown][] = [];
  readonly mainFrame = { url: APP_ENTRY_URL };
  openHandler: Fn | null = null;
  on(ev: string, fn: Fn): this {
    this.events.set(ev, fn);
    return this;
  }
  send(channel: string, payload: unknown): void {
    this.sent.push([channel, payload]);
  }
  isDestroyed(): boolean {
    return false;
  }
  setWindowOpenHandler(h: Fn): void {
    this.openHandler = h;
  }
}

function fakeElectron() {
  const rec = {
    ipc: new Map<string, Fn>(),
    app: new Map<string, Fn[]>(),
    windows: [] as { opts: { webPreferences: Record<string, unknown> }; url: string | null; webContents: FakeWebContents }[],
    schemes: [] as { scheme: string; privileges: Record<string, unknown> }[],
    protocolHandlers: new Map<string, Fn>(),
    permissionRequest: null as Fn | null,
    permissionCheck: null as Fn | null,
    exitCode: null as number | null,
    menus: [] as unknown[],
    exposed: new Map<string, unknown>(),
  };
  const emitApp = (ev: string, ...args: unknown[]): void => {
    for (const fn of rec.app.get(ev) ?? []) fn(...args);
  };
  class BrowserWindow {
    readonly webContents = new FakeWebContents();
    url: string | null = null;
    constructor(readonly opts: { webPreferences: Record<string, unknown> }) {
      rec.windows.push(this);
      emitApp('web-contents-created', {}, this.webContents);
    }
    loadURL(u: string): Promise<void> {
      this.url = u;
      return Promise.resolve();
    }
    once(): this {
      return this;
    }
    on(): this {
      return this;
    }
    isDestroyed(): boolean {
      return false;
    }
    isMinimized(): boolean {
      return false;
    }
    show(): void {}
    focus(): void {}
    restore(): void {}
  }
  class Tray {
    private destroyed = false;
    on(): this {
      return this;
    }
    setContextMenu(m: unknown): void {
      rec.menus.push(m);
    }
    setToolTip(): void {}
    setImage(): void {}
    isDestroyed(): boolean {
      return this.destroyed;
    }
    destroy(): void {
      this.destroyed = true;
    }
  }
  const electron = {
    app: {
      getAppPath: () => ROOT,
      isPackaged: false,
      requestSingleInstanceLock: () => true,
      on: (ev: string, fn: Fn) => void rec.app.set(ev, [...(rec.app.get(ev) ?? []), fn]),
      whenReady: () => Promise.resolve(),
      exit: (code: number) => void (rec.exitCode = code),
      getLoginItemSettings: () => ({ openAtLogin: false, wasOpenedAtLogin: false }),
      setLoginItemSettings: () => {},
    },
    BrowserWindow,
    Tray,
    Menu: { buildFromTemplate: (t: unknown) => t },
    nativeImage: { createFromPath: (p: string) => ({ path: p }) },
    Notification: Object.assign(class { show(): void {} }, { isSupported: () => false }),
    dialog: { showErrorBox: (t: string, m: string) => assert.fail(`error box: ${t}: ${m}`) },
    ipcMain: { handle: (ch: string, fn: Fn) => void rec.ipc.set(ch, fn) },
    powerMonitor: { on: () => {} },
    protocol: {
      registerSchemesAsPrivileged: (s: { scheme: string; privileges: Record<string, unknown> }[]) => void rec.schemes.push(...s),
      handle: (scheme: string, fn: Fn) => void rec.protocolHandlers.set(scheme, fn),
    },
    session: {
      defaultSession: {
        setPermissionRequestHandler: (fn: Fn) => void (rec.permissionRequest = fn),
        setPermissionCheckHandler: (fn: Fn) => void (rec.permissionCheck = fn),
      },
    },
    contextBridge: { exposeInMainWorld: (k: string, v: unknown) => void rec.exposed.set(k, v) },
  };
  return { electron, rec, emitApp };
}

describe('compiled glue with a stand-in electron module', () => {
  let home: string;
  const fake = fakeElectron();
  const FAKE_ID = path.join(OUT, '__fake_electron__.js');
  const M = Module as unknown as { _resolveFilename: Fn };
  let origResolve: Fn;

  before(async () => {
    const r = await runProcess(process.execPath, [TSC, '-p', path.join(ROOT, 'tsconfig.app.json'), '--outDir', OUT, '--sourceMap', 'false'], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, `tsc failed:\n${r.stdout.toString()}\n${r.stderr}`);
    origResolve = M._resolveFilename;
    M._resolveFilename = function (this: unknown, request: string, ...rest: unknown[]) {
      return request === 'electron' ? FAKE_ID : origResolve.call(this, request, ...rest);
    };
    const m = new Module(FAKE_ID);
    m.exports = fake.electron;
    m.loaded = true;
    require.cache[FAKE_ID] = m;

    // The app's config, state and desktop settings in a throwaway home; gsettings confined to a keyfile.
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-glue-'));
    process.env.BRAID_CONFIG = path.join(home, 'config', 'config.json');
    process.env.BRAID_STATE_DIR = path.join(home, 'state');
    process.env.GSETTINGS_BACKEND = 'keyfile';
    process.env.XDG_CONFIG_HOME = path.join(home, 'xdg');
    fs.mkdirSync(path.dirname(process.env.BRAID_CONFIG), { recursive: true });
    fs.writeFileSync(process.env.BRAID_CONFIG, JSON.stringify({ proxy: { host: '127.0.0.1', port: 0 }, paths: { enabled: false }, control: { enabled: false } }));
  });

  after(() => {
    M._resolveFilename = origResolve;
    delete require.cache[FAKE_ID];
    fs.rmSync(OUT, { recursive: true, force: true });
    fs.rmSync(home, { recursive: true, force: true });
  });

  test('the compiled preload requires nothing but electron (a sandboxed preload can do no more)', () => {
    const src = fs.readFileSync(path.join(OUT, 'electron', 'app', 'preload.js'), 'utf8');
    const requires = [...src.matchAll(/require\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(requires)], ['electron']);
  });

  test('the preload exposes exactly window.braid {call, on} and carries calls, errors and events', async () => {
    const src = fs.readFileSync(path.join(OUT, 'electron', 'app', 'preload.js'), 'utf8');
    const invoked: unknown[][] = [];
    const holder: { fn: Fn | null } = { fn: null };
    let reply: unknown = { ok: true, result: { pong: 1 } };
    const ipcRenderer = {
      invoke: async (...args: unknown[]) => (invoked.push(args), reply),
      on: (ch: string, fn: Fn) => {
        assert.equal(ch, IPC.event);
        holder.fn = fn;
      },
    };
    const exposed = new Map<string, unknown>();
    const electron = { contextBridge: { exposeInMainWorld: (k: string, v: unknown) => void exposed.set(k, v) }, ipcRenderer };
    const mod = { exports: {} };
    const requireStub = (id: string): unknown => {
      if (id !== 'electron') throw new Error(`a sandboxed preload cannot require '${id}'`);
      return electron;
    };
    vm.runInNewContext(`(function (exports, require, module) {${src}\n})`, { console })(mod.exports, requireStub, mod);
    assert.deepEqual([...exposed.keys()], ['braid']);
    const api = exposed.get('braid') as { call: Fn; on: Fn };
    assert.deepEqual(Object.keys(api).sort(), ['call', 'on']);

    assert.deepEqual({ ...(await api.call('status', {})) }, { pong: 1 });
    assert.deepEqual(invoked[0], [IPC.call, 'status', {}]);
    reply = { ok: false, error: { code: 'EBADPARAMS', message: 'enabled must be true or false' } };
    await assert.rejects(api.call('systemProxy.set', { enabled: 'x' }), (e: unknown) => {
      // a plain object (another realm's, hence the spread): what crosses the context bridge intact
      assert.deepEqual({ ...(e as object) }, { code: 'EBADPARAMS', message: 'enabled must be true or false' });
      assert.ok(!(e instanceof Error));
      return true;
    });

    const got: unknown[] = [];
    const off = api.on('stats', (d: unknown) => got.push(d));
    api.on('paths.changed', () => got.push('wrong event'));
    assert.ok(holder.fn);
    const ipcEvent = { sender: 'the ipcRenderer event, must not leak' };
    holder.fn!(ipcEvent, { event: 'stats', data: { t: 1 } });
    off();
    holder.fn!(ipcEvent, { event: 'stats', data: { t: 2 } });
    assert.deepEqual(JSON.parse(JSON.stringify(got)), [{ t: 1 }], 'only the data, only for the subscribed event, not after unsubscribing');
  });

  test('main: privileged app:// scheme, CSP on every file, secure window, blocked navigation and windows, checked IPC, quit stops the core', async () => {
    require(path.join(OUT, 'electron', 'app', 'main.js'));
    const { rec, emitApp } = fake;
    assert.deepEqual(rec.schemes.map((s) => [s.scheme, s.privileges.standard, s.privileges.secure]), [['app', true, true]]);
    await waitFor('the window', () => rec.windows.length === 1 && rec.ipc.has(IPC.call));

    const win = rec.windows[0];
    assert.equal(win.url, APP_ENTRY_URL);
    const wp = win.opts.webPreferences;
    assert.deepEqual([wp.contextIsolation, wp.sandbox, wp.nodeIntegration, wp.webSecurity], [true, true, false, true]);
    assert.equal(wp.preload, path.join(OUT, 'electron', 'app', 'preload.js'));

    // navigation and new windows
    const prevented: string[] = [];
    const nav = (ev: string, url: string): void => win.webContents.events.get(ev)!({ preventDefault: () => prevented.push(`${ev} ${url}`) }, url);
    nav('will-navigate', 'https://evil.example/');
    nav('will-navigate', 'app://braid/other.html');
    nav('will-redirect', 'http://127.0.0.1:9797/');
    win.webContents.events.get('will-attach-webview')!({ preventDefault: () => prevented.push('webview') });
    assert.deepEqual(prevented, ['will-navigate https://evil.example/', 'will-redirect http://127.0.0.1:9797/', 'webview']);
    assert.deepEqual(win.webContents.openHandler!({ url: 'https://example.com/' }), { action: 'deny' });

    // permissions
    let granted: boolean | null = null;
    rec.permissionRequest!(win.webContents, 'media', (g: boolean) => (granted = g));
    assert.equal(granted, false);
    assert.equal(rec.permissionCheck!(), false);

    // app:// protocol: CSP on what it serves; nothing outside renderer/dist
    const handler = rec.protocolHandlers.get('app')!;
    const index = (await handler({ url: 'app://braid/index.html' })) as Response;
    assert.equal(index.status, 200);
    assert.equal(index.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
    assert.match(index.headers.get('content-type') ?? '', /text\/html/);
    const escape = (await handler({ url: 'app://braid/%2e%2e/%2e%2e/package.json' })) as Response;
    assert.equal(escape.status, 404);
    assert.doesNotMatch(await escape.text(), /"name": "braid"/);
    assert.equal(((await handler({ url: 'app://elsewhere/index.html' })) as Response).status, 404);

    // IPC: only our page in our window's main frame
    const call = rec.ipc.get(IPC.call)!;
    const trusted = { sender: win.webContents, senderFrame: win.webContents.mainFrame };
    const status = (await call(trusted, 'status', {})) as { ok: true; result: StatusView };
    assert.equal(status.ok, true);
    assert.equal(status.result.proxy.running, true, 'the proxy started at launch');
    assert.equal(status.result.paths.managed, false);
    // The proxy the app started at launch really answers where the status says.
    const listen = status.result.proxy.listen!;
    const launched = /^(127\.0\.0\.1):(\d+)$/.exec(listen);
    assert.ok(launched, `listen address ${listen}`);
    assert.equal(await probeListening(launched[1]!, Number(launched[2]), 1000), true, `nothing answers at ${listen}`);
    for (const bad of [
      { sender: win.webContents, senderFrame: { url: 'https://evil.example/' } },
      { sender: new FakeWebContents(), senderFrame: { url: APP_ENTRY_URL } },
      { sender: win.webContents, senderFrame: null },
    ]) {
      assert.deepEqual(await call(bad, 'proxy.stop', {}), { ok: false, error: { code: 'EFORBIDDEN', message: 'not allowed from this page' } });
    }
    assert.equal(((await call(trusted, 'nope', {})) as { error: { code: string } }).error.code, 'ECOMMAND');
    assert.equal(((await call(trusted, 'systemProxy.set', { enabled: 'yes' })) as { error: { code: string } }).error.code, 'EBADPARAMS');

    // events reach the window
    const stopped = (await call(trusted, 'proxy.stop', {})) as { ok: true; result: { running: boolean } };
    assert.equal(stopped.result.running, false);
    assert.equal(await probeListening(launched[1]!, Number(launched[2]), 1000), false, 'proxy.stop left the listener open');
    const events = win.webContents.sent.filter(([ch]) => ch === IPC.event).map(([, f]) => (f as { event: string }).event);
    assert.ok(events.includes('status.changed'), events.join(','));
    await call(trusted, 'proxy.start', {});
    const port = Number(((await call(trusted, 'status', {})) as { result: StatusView }).result.proxy.listen!.split(':').pop());
    assert.equal(await probeListening('127.0.0.1', port, 1000), true, 'proxy.start: nothing answers');

    // the tray got a menu
    assert.ok(rec.menus.length >= 1);

    // quit: shut down the core, then exit
    let prevent = 0;
    emitApp('before-quit', { preventDefault: () => prevent++ });
    await waitFor('app.exit', () => rec.exitCode !== null, 20_000);
    assert.equal(prevent, 1, 'quit waits for the shutdown');
    assert.equal(rec.exitCode, 0);
    assert.equal(await probeListening('127.0.0.1', port, 1000), false, 'the proxy stopped');
  });
});

async function waitFor(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---- packaging ----------------------------------------------------------------------------------

describe('electron-builder configuration', () => {
  type Cfg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  // electron-builder's own loader and schema validation (app-builder-lib, what `electron-builder --config` runs).
  const lib = require(path.join(ROOT, 'node_modules', 'app-builder-lib', 'out', 'util', 'config', 'config.js')) as {
    getConfig(projectDir: string, configPath: string | null, fromOptions: unknown): Promise<Cfg>;
    validateConfiguration(config: Cfg, debugLogger: { isEnabled: boolean; add(): void }): Promise<void>;
  };
  const debug = { isEnabled: false, add: () => {} };
  let cfg: Cfg;

  before(async () => {
    cfg = await lib.getConfig(ROOT, path.join('build', 'electron-builder.yml'), null);
  });

  test('passes electron-builder\'s schema validation', async () => {
    await lib.validateConfiguration(structuredClone(cfg), debug);
  });

  test('the validation is real: a misspelt option is rejected', async () => {
    const bad = structuredClone(cfg);
    bad.linux.targets = bad.linux.target;
    await assert.rejects(lib.validateConfiguration(bad, debug), /configuration\.linux/);
  });

  test('identity, targets, the unpacked addon, output away from the TypeScript dist/', () => {
    assert.equal(cfg.productName, 'Braid');
    assert.match(cfg.appId, /^[a-z0-9.-]+$/);
    const targets = (t: unknown): string[] => (Array.isArray(t) ? t : [t]).map((x) => (typeof x === 'string' ? x : (x as { target: string }).target));
    assert.ok(targets(cfg.linux.target).includes('AppImage'));
    assert.ok(targets(cfg.linux.target).includes('deb'));
    assert.ok(targets(cfg.mac.target).includes('dmg'));
    assert.ok(targets(cfg.win.target).includes('nsis'));
    assert.equal(cfg.linux.category, 'Network');
    assert.match(cfg.linux.maintainer, /<[^@>]+@[^>]+>/);
    assert.ok(cfg.deb.depends.includes('iproute2'));
    assert.ok(cfg.asarUnpack.includes('native/build/Release/*.node'));
    const files: string[] = cfg.files.flatMap((f: string | { filter: string[] }) => (typeof f === 'string' ? [f] : f.filter));
    for (const f of ['native/build/Release/*.node', 'renderer/dist/**', 'package.json']) assert.ok(files.includes(f), f);
    assert.ok(files.some((f) => f.startsWith('dist/')), 'the compiled main process');
    assert.notEqual(cfg.directories.output, 'dist');
  });

  test('the icons it names exist and are real PNGs of their stated sizes', () => {
    const size = (file: string): [number, number] => {
      const b = fs.readFileSync(file);
      assert.deepEqual([...b.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${file} is a PNG`);
      assert.equal(b.subarray(12, 16).toString('ascii'), 'IHDR');
      return [b.readUInt32BE(16), b.readUInt32BE(20)];
    };
    for (const n of [16, 32, 48, 64, 128, 256, 512]) assert.deepEqual(size(path.join(ROOT, 'build', 'icons', `${n}x${n}.png`)), [n, n]);
    assert.deepEqual(size(path.join(ROOT, cfg.mac.icon)), [512, 512]);
    assert.deepEqual(size(path.join(ROOT, cfg.win.icon)), [512, 512]);
    for (const t of ['tray-on', 'tray-off', 'tray-warning']) assert.deepEqual(size(path.join(ROOT, 'build', 'icons', `${t}.png`)), [32, 32]);
    assert.ok(cfg.extraResources.some((r: { from: string }) => r.from === 'build/icons'), 'the tray icons ship as resources');
  });

  test('package.json: main is the compiled app, build compiles the glue, dist uses this config', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { main: string; scripts: Record<string, string> };
    assert.equal(pkg.main, 'dist/electron/app/main.js');
    assert.match(pkg.scripts.build, /tsc -p tsconfig\.app\.json/);
    assert.match(pkg.scripts.dist, /electron-builder --config build\/electron-builder\.yml/);
    assert.equal(pkg.scripts.start, 'node electron/app/start.js');
  });
});

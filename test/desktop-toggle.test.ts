/**
 * The desktop's on/off order against a real BraidService on loopback and the real gsettings
 * (keyfile backend, throwaway XDG directories, so the user's settings are never touched): the
 * system proxy is only ever set while the proxy accepts connections, and restored while it still
 * does. A thin recorder around the real DesktopSystemProxy notes, at each call, whether the proxy
 * really answered a TCP connect then. A failing restore is real too (gsettings without its schemas);
 * only a restore that hangs is injected by the recorder, as gsettings cannot be made to hang here.
 * Then the whole desktop runtime, including recovery at start after a Braid holding the system
 * proxy was killed with SIGKILL. Every test starts from a user's own manual proxy, not the
 * default, so that a restore that resets to defaults fails.
 *
 * Root namespace: path management is always off here (never the host's MPTCP endpoints).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import { validateConfig } from '../electron/core/config/schema';
import type { SystemProxyView } from '../electron/core/contract';
import { ControlCore, type SystemProxyControl } from '../electron/core/control/handlers';
import { dispatch } from '../electron/core/control/server';
import { DesktopController, type ToggleState } from '../electron/core/desktop/controller';
import { startDesktopRuntime, type DesktopRuntime } from '../electron/core/desktop/runtime';
import { DesktopSystemProxy } from '../electron/core/desktop/system-proxy-control';
import { BraidError } from '../electron/core/errors';
import { BraidService } from '../electron/core/service';
import { GnomeBackend } from '../electron/core/sysproxy/gnome';
import { probeListening } from '../electron/core/sysproxy/journal';
import { SystemProxyManager } from '../electron/core/sysproxy/manager';
import { requireFor } from './helpers/prerequisites';
import { runProcess, startProcess, type Running } from './helpers/proc';

const quiet = { info: () => {}, warn: () => {}, debug: () => {} };

function newService(port = 0, host = '127.0.0.1'): BraidService {
  const config = validateConfig({ proxy: { host, port }, paths: { enabled: false }, control: { enabled: false } });
  return new BraidService({ config, configFile: null, stateDir: null, log: quiet, managePaths: false });
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const ROOT = 'org.gnome.system.proxy';

/** A user's own proxy settings, far from the defaults, as `gsettings get` prints them. */
const USER_SETTINGS: Array<[string, string, string]> = [
  [ROOT, 'mode', "'manual'"],
  [ROOT, 'ignore-hosts', "['localhost', '*.corp.example']"],
  [`${ROOT}.http`, 'host', "'proxy.corp.example'"],
  [`${ROOT}.http`, 'port', '3128'],
  [`${ROOT}.https`, 'host', "'proxy.corp.example'"],
  [`${ROOT}.https`, 'port', '3129'],
  [`${ROOT}.socks`, 'host', "'socks.corp.example'"],
  [`${ROOT}.socks`, 'port', '1081'],
];

/** A throwaway gsettings world (keyfile backend) holding the user's settings above. */
class Desktop {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-desktop-'));
  readonly env: NodeJS.ProcessEnv = { ...process.env, GSETTINGS_BACKEND: 'keyfile', XDG_CONFIG_HOME: path.join(this.dir, 'xdg') };
  readonly backend = new GnomeBackend({ env: this.env });

  async gs(...args: string[]): Promise<string> {
    const r = await runProcess('gsettings', args, { env: this.env, timeoutMs: 10_000 });
    assert.equal(r.code, 0, `gsettings ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.toString().trim();
  }

  async setUserSettings(): Promise<void> {
    for (const [schema, key, value] of USER_SETTINGS) await this.gs('set', schema, key, value);
  }

  /** The eight keys Braid touches, as gsettings prints them. */
  async read(): Promise<Array<[string, string, string]>> {
    const out: Array<[string, string, string]> = [];
    for (const [schema, key] of USER_SETTINGS) out.push([schema, key, await this.gs('get', schema, key)]);
    return out;
  }

  /** Where the system proxy points when it is Braid's: the SOCKS port, or null when not manual at 127.0.0.1. */
  async braidPort(): Promise<number | null> {
    if ((await this.gs('get', ROOT, 'mode')) !== "'manual'" || (await this.gs('get', `${ROOT}.socks`, 'host')) !== "'127.0.0.1'") return null;
    return Number(await this.gs('get', `${ROOT}.socks`, 'port'));
  }

  /** gsettings finds no schema at all, so every write fails: a real failing restore. */
  breakTool(): void {
    this.env.XDG_DATA_DIRS = path.join(this.dir, 'no-schemas');
  }

  close(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function gsettingsMissing(): string | undefined {
  const d = new Desktop();
  try {
    const r = spawnSync('gsettings', ['list-keys', ROOT], { env: d.env, encoding: 'utf8', timeout: 10_000 });
    return r.status === 0 && r.stdout.split('\n').includes('mode') ? undefined
      : `gsettings with the ${ROOT} schema is needed (apt-get install libglib2.0-bin gsettings-desktop-schemas): ${String(r.error ?? r.stderr).trim()}`;
  } finally {
    d.close();
  }
}
const noGsettings = requireFor('the desktop toggle against the real gsettings (desktop-toggle.test.ts)', gsettingsMissing());

/** The real system-proxy control, with each call recorded next to whether the proxy answered then. */
class RecordingSystemProxy implements SystemProxyControl {
  hangDisable = false;
  readonly real: DesktopSystemProxy;
  /** Changes still being written (the controller may start one the test does not wait for). */
  readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly service: BraidService, readonly log: string[], desktop: Desktop, stateDir: string) {
    const manager = new SystemProxyManager({ backend: desktop.backend, stateDir });
    this.real = new DesktopSystemProxy({ manager, proxyAddress: () => this.service.proxy?.address ?? null });
  }

  view(): SystemProxyView {
    return this.real.view();
  }

  async set(enabled: boolean): Promise<SystemProxyView> {
    const addr = this.service.proxy?.address ?? null;
    const answers = addr ? await probeListening(addr.address, addr.port, 1000) : false;
    this.log.push(`set(${enabled}) while the proxy ${answers ? 'answers' : 'is dead'}`);
    if (!enabled && this.hangDisable) return new Promise<SystemProxyView>(() => {});
    const p = this.real.set(enabled);
    this.inFlight.add(p);
    void p.catch(() => {}).finally(() => this.inFlight.delete(p));
    return p;
  }
}

interface Rig {
  service: BraidService;
  core: ControlCore;
  sp: RecordingSystemProxy;
  desktop: Desktop;
  controller: DesktopController;
  log: string[];
  chosen: ToggleState[];
}

const rigs: Rig[] = [];

async function rig(opts: { port?: number; restartGraceMs?: number } = {}): Promise<Rig> {
  const desktop = new Desktop();
  await desktop.setUserSettings();
  const service = newService(opts.port);
  const log: string[] = [];
  service.on('proxy.started', () => log.push('proxy started'));
  service.on('proxy.stopped', () => log.push('proxy stopped'));
  const core = new ControlCore(service);
  const sp = new RecordingSystemProxy(service, log, desktop, path.join(desktop.dir, 'state'));
  core.systemProxy = sp;
  const controller = new DesktopController({ service, handlers: core.handlers, systemProxy: sp, log: quiet, restartGraceMs: opts.restartGraceMs });
  controller.install();
  const chosen: ToggleState[] = [];
  controller.on('chosen', (s) => chosen.push(s));
  const r = { service, core, sp, desktop, controller, log, chosen };
  rigs.push(r);
  return r;
}

afterEach(async () => {
  for (const r of rigs.splice(0)) {
    r.controller.close();
    r.core.close();
    await r.service.stop();
    // Nothing may write into the throwaway desktop once it is removed.
    await Promise.allSettled([...r.sp.inFlight]);
    r.desktop.close();
  }
});

describe('desktop toggle order (real proxy on loopback, real gsettings)', { skip: noGsettings }, () => {
  test('on: the proxy starts first, then the system proxy is set while the proxy answers', async () => {
    const { controller, log, service, desktop, chosen } = await rig();
    const state = await controller.turnOn({ systemProxy: true });
    assert.deepEqual(state, { proxy: true, systemProxy: true });
    assert.deepEqual(log, ['proxy started', 'set(true) while the proxy answers']);
    assert.equal(await desktop.braidPort(), service.proxy!.address!.port);
    assert.deepEqual(chosen, [{ proxy: true, systemProxy: true }]);
  });

  test('off: the user\'s settings are back while the proxy still answers, then the proxy stops', async () => {
    const { controller, log, service, desktop } = await rig();
    await controller.turnOn({ systemProxy: true });
    const addr = service.proxy!.address!;
    log.length = 0;
    const state = await controller.turnOff();
    assert.deepEqual(state, { proxy: false, systemProxy: false });
    assert.deepEqual(log, ['set(false) while the proxy answers', 'proxy stopped']);
    assert.deepEqual(await desktop.read(), USER_SETTINGS);
    assert.equal(await probeListening(addr.address, addr.port, 1000), false, 'the proxy really stopped');
  });

  test('off with a failed restore keeps the proxy running, so the system never points at a dead proxy', async () => {
    const { controller, service, sp, desktop, log } = await rig();
    await controller.turnOn({ systemProxy: true });
    const port = service.proxy!.address!.port;
    desktop.breakTool();
    await assert.rejects(controller.turnOff(), (err: BraidError) => err.code === 'ESYSPROXY_TOOL_FAILED' && /gsettings/.test(err.message));
    const addr = service.proxy?.address;
    assert.ok(addr, 'the proxy is still running');
    assert.equal(await probeListening(addr.address, addr.port, 1000), true);
    assert.equal(sp.view().enabled, true);
    assert.ok(!log.includes('proxy stopped'));
    delete desktop.env.XDG_DATA_DIRS;
    assert.equal(await desktop.braidPort(), port, 'the system proxy should still point at the running proxy');
  });

  test('proxy.stop through the handler table (any transport) restores the system proxy first', async () => {
    const { core, log, desktop } = await rig();
    await dispatch(core.handlers, 'systemProxy.set', { enabled: true });
    log.length = 0;
    const view = (await dispatch(core.handlers, 'proxy.stop', {})) as { running: boolean };
    assert.equal(view.running, false);
    assert.deepEqual(log, ['set(false) while the proxy answers', 'proxy stopped']);
    assert.equal(core.status().systemProxy.enabled, false);
    assert.deepEqual(await desktop.read(), USER_SETTINGS);
  });

  test('systemProxy.set {enabled: true} with the proxy stopped starts the proxy first', async () => {
    const { core, log, service, desktop } = await rig();
    assert.equal(service.proxy, null);
    const view = (await dispatch(core.handlers, 'systemProxy.set', { enabled: true })) as SystemProxyView;
    assert.equal(view.enabled, true);
    assert.deepEqual(log, ['proxy started', 'set(true) while the proxy answers']);
    assert.equal(core.status().proxy.running, true);
    assert.equal(await desktop.braidPort(), service.proxy!.address!.port);
  });

  test('systemProxy.set {enabled: false} leaves the proxy running and the user\'s settings back', async () => {
    const { core, service, controller, desktop } = await rig();
    await controller.turnOn({ systemProxy: true });
    await dispatch(core.handlers, 'systemProxy.set', { enabled: false });
    assert.ok(service.proxy?.address);
    assert.deepEqual(await desktop.read(), USER_SETTINGS);
  });

  test('a proxy restarted on another port (config change) gets the system proxy pointed at it', async () => {
    const port = await freePort();
    const { controller, service, sp, desktop, log } = await rig({ restartGraceMs: 3000 });
    await controller.turnOn({ systemProxy: true });
    const first = await desktop.braidPort();
    await service.updateConfig({ proxy: { port } });
    assert.equal(service.proxy!.address!.port, port);
    await until('the system proxy follows the new port', async () => sp.real.pointsAt?.port === port && (await desktop.braidPort()) === port, 10_000);
    assert.notEqual(first, port);
    assert.equal(log.at(-1), 'set(true) while the proxy answers');
  });

  test('a proxy that stops outside a toggle and does not come back takes the system proxy with it', async () => {
    const { controller, service, sp, desktop, log } = await rig({ restartGraceMs: 100 });
    await controller.turnOn({ systemProxy: true });
    await service.stopProxy();
    await until('the system proxy is restored', () => !sp.view().enabled, 5000);
    assert.deepEqual(log.slice(-2), ['proxy stopped', 'set(false) while the proxy is dead']);
    assert.deepEqual(await desktop.read(), USER_SETTINGS);
  });

  test('toggles are serialized: on and off together end off, and nothing is set while dead', async () => {
    const { controller, log, sp, desktop } = await rig();
    const busy: boolean[] = [];
    controller.on('busy', (b) => busy.push(b));
    const [a, b] = await Promise.all([controller.turnOn({ systemProxy: true }), controller.turnOff()]);
    assert.deepEqual(a, { proxy: true, systemProxy: true });
    assert.deepEqual(b, { proxy: false, systemProxy: false });
    assert.equal(sp.view().enabled, false);
    assert.deepEqual(await desktop.read(), USER_SETTINGS);
    assert.ok(!log.some((l) => l.includes('set(true) while the proxy is dead')), log.join('\n'));
    assert.deepEqual(busy, [true, false]);
    assert.equal(controller.busy, false);
  });

  test('what is done at launch is not remembered as the user\'s choice', async () => {
    const { controller, chosen } = await rig();
    await controller.turnOn({ systemProxy: false }, { remember: false });
    assert.deepEqual(chosen, []);
    await controller.turnOff();
    assert.deepEqual(chosen, [{ proxy: false, systemProxy: false }]);
  });

  test('shutdown restores first, is bounded when the restore hangs, and stops the proxy anyway', async () => {
    const { controller, sp, service, log } = await rig();
    await controller.turnOn({ systemProxy: true });
    sp.hangDisable = true;
    const t0 = Date.now();
    const r = await controller.shutdown(300);
    assert.equal(r.systemProxyRestored, false);
    assert.ok(Date.now() - t0 < 3000, 'bounded');
    assert.equal(service.proxy, null);
    assert.deepEqual(log.slice(-2), ['set(false) while the proxy answers', 'proxy stopped']);
  });
});

describe('DesktopSystemProxy (the SystemProxyControl on SystemProxyManager), real gsettings', { skip: noGsettings }, () => {
  let desktop: Desktop;
  beforeEach(async () => {
    desktop = new Desktop();
    await desktop.setUserSettings();
  });
  afterEach(() => desktop.close());

  test('points at the proxy\'s address; a wildcard listener becomes loopback; off restores the user\'s settings', async () => {
    const manager = new SystemProxyManager({ backend: desktop.backend, stateDir: path.join(desktop.dir, 'state') });
    let addr: { address: string; port: number } | null = { address: '0.0.0.0', port: 4321 };
    const sp = new DesktopSystemProxy({ manager, proxyAddress: () => addr });
    assert.deepEqual(sp.view(), { enabled: false, backend: 'gnome', error: null });
    assert.deepEqual(await sp.set(true), { enabled: true, backend: 'gnome', error: null });
    assert.equal(await desktop.braidPort(), 4321);
    assert.equal(await desktop.gs('get', `${ROOT}.http`, 'host'), "'127.0.0.1'");
    assert.deepEqual(sp.pointsAt, { host: '127.0.0.1', port: 4321 });
    assert.equal((await sp.set(false)).enabled, false);
    assert.deepEqual(await desktop.read(), USER_SETTINGS);
    addr = null;
    await assert.rejects(sp.set(true), (e: BraidError) => e.code === 'ENOTRUNNING');
    assert.deepEqual(await desktop.read(), USER_SETTINGS, 'nothing changed for a stopped proxy');
    assert.match(sp.view().error ?? '', /not running/);
  });

  test('without a backend it says why and refuses', async () => {
    const sp = new DesktopSystemProxy({ manager: null, unavailableReason: 'no gsettings here', proxyAddress: () => null });
    assert.deepEqual(sp.view(), { enabled: false, backend: null, error: 'no gsettings here' });
    await assert.rejects(sp.set(true), (e: BraidError) => e.code === 'ESYSPROXY_UNSUPPORTED' && /no gsettings/.test(e.message));
  });
});

describe('desktop runtime with the real gsettings (keyfile backend)', { skip: noGsettings }, () => {
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  const runtimes: DesktopRuntime[] = [];
  const children: Running[] = [];

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-desktop-'));
    env = { ...process.env, GSETTINGS_BACKEND: 'keyfile', XDG_CONFIG_HOME: path.join(tmp, 'xdg') };
    fs.writeFileSync(
      path.join(tmp, 'config.json'),
      JSON.stringify({ proxy: { host: '127.0.0.1', port: 0 }, paths: { enabled: false }, control: { enabled: true, host: '127.0.0.1', port: 0, token: 'test-token-0123456789' } }),
    );
  });
  afterEach(async () => {
    for (const r of runtimes.splice(0)) await r.shutdown();
    await Promise.all(children.splice(0).map((c) => c.stop('SIGKILL', 1000)));
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  after(async () => {
    await Promise.all(children.splice(0).map((c) => c.stop('SIGKILL', 1000)));
  });

  async function gs(...args: string[]): Promise<string> {
    const r = await runProcess('gsettings', args, { env, timeoutMs: 10_000 });
    assert.equal(r.code, 0, `gsettings ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.toString().trim();
  }

  async function start(systemProxyOnLaunch: boolean): Promise<DesktopRuntime> {
    const rt = await startDesktopRuntime({
      configFile: path.join(tmp, 'config.json'),
      stateDir: path.join(tmp, 'state'),
      log: quiet,
      settings: { proxyOnLaunch: true, systemProxyOnLaunch },
      backend: new GnomeBackend({ env }),
      watchConfig: false,
    });
    runtimes.push(rt);
    return rt;
  }

  test('on at launch sets the system proxy to the running proxy; proxy.stop over HTTP restores it before stopping', async () => {
    await gs('set', ROOT, 'mode', 'auto');
    await gs('set', `${ROOT}`, 'autoconfig-url', 'http://wpad.example/wpad.dat');
    const rt = await start(true);
    assert.deepEqual(rt.problems, []);
    const port = rt.service.proxy!.address!.port;
    assert.equal(await gs('get', ROOT, 'mode'), "'manual'");
    assert.equal(await gs('get', `${ROOT}.socks`, 'host'), "'127.0.0.1'");
    assert.equal(await gs('get', `${ROOT}.socks`, 'port'), String(port));
    assert.deepEqual(rt.core.status().systemProxy, { enabled: true, backend: 'gnome', error: null });

    // The HTTP control API shares the handler table the controller rewired.
    const res = await fetch(`${rt.control!.url}api/proxy.stop`, { method: 'POST', headers: { Authorization: 'Bearer test-token-0123456789' }, body: '{}', signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { ok: boolean; result: { running: boolean } };
    assert.equal(body.ok, true);
    assert.equal(body.result.running, false);
    assert.equal(await gs('get', ROOT, 'mode'), "'auto'");
    assert.equal(await gs('get', ROOT, 'autoconfig-url'), "'http://wpad.example/wpad.dat'");
    assert.equal(await probeListening('127.0.0.1', port, 1000), false);
  });

  /** The user's own manual proxy (not the default), key by key as gsettings prints it. */
  const setUserSettings = async (): Promise<void> => {
    for (const [schema, key, value] of USER_SETTINGS) await gs('set', schema, key, value);
  };
  const readSettings = async (): Promise<Array<[string, string, string]>> => {
    const out: Array<[string, string, string]> = [];
    for (const [schema, key] of USER_SETTINGS) out.push([schema, key, await gs('get', schema, key)]);
    return out;
  };

  test('quit (shutdown) restores the user\'s settings', async () => {
    await setUserSettings();
    const rt = await start(true);
    assert.equal(await gs('get', ROOT, 'mode'), "'manual'");
    assert.equal(await gs('get', `${ROOT}.socks`, 'host'), "'127.0.0.1'");
    assert.equal(await gs('get', `${ROOT}.http`, 'port'), String(rt.service.proxy!.address!.port));
    const r = await rt.shutdown();
    assert.equal(r.systemProxyRestored, true);
    assert.deepEqual(await readSettings(), USER_SETTINGS);
    assert.equal(rt.service.proxy, null);
  });

  test('after a Braid holding the system proxy dies with no guardian left, the next start restores it first', async () => {
    await setUserSettings();
    // No guardian (as after a power cut): only the next start can put the settings back.
    const child = await startProcess(process.execPath, [path.join(__dirname, 'helpers', 'sysproxy-child.js'), '--state', path.join(tmp, 'state'), '--mode', 'hold', '--port', '1'], { env: { ...env, BRAID_GUARDIAN: 'off' }, ready: /^enabled$/m, timeoutMs: 20_000 });
    children.push(child);
    assert.equal(await gs('get', ROOT, 'mode'), "'manual'");
    assert.equal(await gs('get', `${ROOT}.socks`, 'port'), '1');
    child.child.kill('SIGKILL');
    await child.exited;
    const rt = await start(false);
    assert.deepEqual(rt.recovered.map((r) => [r.kind, r.pid, r.ok, r.by]), [['system-proxy', child.child.pid, true, 'start']]);
    assert.deepEqual(await readSettings(), USER_SETTINGS);
    assert.equal(rt.core.status().systemProxy.enabled, false);
    assert.ok(rt.service.proxy?.address, 'the proxy itself still starts');
  });
});

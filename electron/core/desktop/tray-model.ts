/**
 * The tray menu as plain data, computed from the status and the last statistics tick alone. The
 * Electron glue (electron/app/tray.ts) only turns this tree into a native menu, so everything the
 * menu shows and does is decided (and tested) here without Electron.
 */
import type { CommandName, InterfaceView, PathPolicy, PathSample, StatsTick, StatusView } from '../contract';
import { formatRate, wrapText } from './format';

/** What clicking an item does: a control command, or one of the shell's own actions. */
export type MenuAction =
  | { command: CommandName; params: Record<string, unknown> }
  | { setting: 'launchAtLogin'; value: boolean }
  | 'open-window'
  | 'quit';

export interface MenuItemModel {
  id: string;
  label: string;
  type: 'normal' | 'checkbox' | 'radio' | 'separator' | 'submenu';
  checked?: boolean;
  enabled?: boolean;
  submenu?: MenuItemModel[];
  action?: MenuAction;
}

export interface MenuModel {
  /** The tray icon's tooltip: the status line, then what is wrong if anything is. */
  tooltip: string;
  /** Which tray icon to show: proxy off, on, or on with a problem (`problems` says which). */
  icon: 'on' | 'off' | 'warning';
  /** What keeps Braid from doing its job while it runs, one line each; empty when nothing does. */
  problems: string[];
  items: MenuItemModel[];
}

export interface TrayModelOptions {
  /** Now, in ms since the epoch; a tick older than `staleMs` is not shown as current rates. */
  now?: number;
  staleMs?: number;
  /** The launch-at-login setting, or null where the platform has no way to do it. */
  launchAtLogin?: boolean | null;
  /** A toggle is under way: toggles are disabled until it finishes (clicks would race). */
  busy?: boolean;
  /** How many paths the status line names before "+N more". */
  maxPaths?: number;
}

const REASON_WIDTH = 60;
const POLICY_LABELS: Record<PathPolicy, string> = {
  use: 'Use — carries traffic',
  secondary: 'Secondary — joins big transfers when the others are full',
  backup: 'Backup — only when the others fail',
  off: 'Off — not used by Braid',
};
const POLICY_ORDER: PathPolicy[] = ['use', 'secondary', 'backup', 'off'];

const separator = (id: string): MenuItemModel => ({ id, label: '', type: 'separator' });
const info = (id: string, label: string): MenuItemModel => ({ id, label, type: 'normal', enabled: false });

function rateOf(p: PathSample): number {
  return p.upBps + p.downBps;
}

/** The paths worth naming: carrying traffic, or holding subflows of live connections. */
function activePaths(tick: StatsTick | null): PathSample[] {
  if (!tick) return [];
  return tick.paths.filter((p) => rateOf(p) > 0 || p.subflows > 0).sort((a, b) => rateOf(b) - rateOf(a) || a.path.localeCompare(b.path));
}

/** "Braid on — wlan0 12.3 Mbit/s · wwan0 4.1 Mbit/s", "Braid on — idle", "Braid off". */
export function statusLine(status: StatusView, lastTick: StatsTick | null, opts: TrayModelOptions = {}): string {
  if (!status.proxy.running) return 'Braid off';
  const now = opts.now ?? Date.now();
  const fresh = lastTick && now - lastTick.t <= (opts.staleMs ?? 5000) ? lastTick : null;
  const plain = status.proxy.dial === 'tcp' || !status.proxy.mptcp.supported ? ' (plain TCP)' : '';
  const paths = activePaths(fresh);
  if (paths.length === 0) return `Braid on${plain} — idle`;
  const max = Math.max(1, opts.maxPaths ?? 3);
  const named = paths.slice(0, max).map((p) => `${p.path} ${formatRate(rateOf(p))}`);
  if (paths.length > max) named.push(`+${paths.length - max} more`);
  return `Braid on${plain} — ${named.join(' · ')}`;
}

function stateLabel(i: InterfaceView): string {
  switch (i.state) {
    case 'active':
      return 'in use';
    case 'secondary':
      return 'secondary';
    case 'backup':
      return 'backup';
    case 'off':
      return 'off';
    case 'down':
      return 'down';
    case 'no-address':
      return 'no address';
    case 'managed-elsewhere':
      return 'managed elsewhere';
    case 'unmanaged':
      return 'not managed';
  }
}

function interfaceSubmenu(i: InterfaceView, managed: boolean, busy: boolean): MenuItemModel {
  const elsewhere = i.state === 'managed-elsewhere';
  const items: MenuItemModel[] = POLICY_ORDER.map((policy) => ({
    id: `paths.${i.name}.${policy}`,
    label: POLICY_LABELS[policy],
    type: 'radio',
    checked: i.policy === policy,
    enabled: managed && !elsewhere && !busy,
    action: { command: 'paths.setPolicy', params: { interface: i.name, policy } },
  }));
  if (elsewhere) items.unshift(info(`paths.${i.name}.reason`, 'Its MPTCP endpoints belong to another program'), separator(`paths.${i.name}.sep`));
  if (i.demotion) {
    const lines = wrapText(`${i.policy} → ${i.effective}: ${i.demotion.reason}`, REASON_WIDTH, 2);
    items.unshift(...lines.map((l, n) => info(`paths.${i.name}.demotion.${n}`, l)), separator(`paths.${i.name}.demotion.sep`));
  }
  const what = i.ssid ? `${i.kind} “${i.ssid}”` : i.kind;
  return { id: `paths.${i.name}`, label: `${i.name} (${what}) — ${stateLabel(i)}`, type: 'submenu', submenu: items };
}

function pathsSubmenu(status: StatusView, busy: boolean): MenuItemModel {
  const p = status.paths;
  const items: MenuItemModel[] = [];
  if (!p.managed) {
    const reason = p.reason ?? 'path management is not available';
    wrapText(reason, REASON_WIDTH, 4).forEach((line, n) => items.push(info(`paths.reason.${n}`, line)));
    if (p.interfaces.length) items.push(separator('paths.reason.sep'));
  }
  for (const i of p.interfaces) items.push(interfaceSubmenu(i, p.managed, busy));
  if (items.length === 0) items.push(info('paths.none', 'No network interfaces found'));
  return { id: 'paths', label: p.managed ? 'Paths' : 'Paths (not managed)', type: 'submenu', submenu: items };
}

/**
 * What is wrong while the proxy runs, for the icon and the menu. A desktop with no way to set a
 * system proxy is not a problem (the toggle says so); a failed change of it is.
 */
export function trayProblems(status: StatusView): string[] {
  if (!status.proxy.running) return [];
  const out: string[] = [];
  const { relay, systemProxy: sp, proxy, paths } = status;
  if (relay?.state === 'error') out.push(`Relay ${relay.host}: ${relay.error ?? 'unreachable'}`);
  if (sp.error !== null && sp.backend !== null) out.push(`System proxy: ${sp.error}`);
  if (!proxy.mptcp.supported) out.push(`No multipath: ${proxy.mptcp.reason ?? 'MPTCP is not available'}; one path, plain TCP`);
  if (paths.interfaces.length > 0 && paths.interfaces.every((i) => i.state === 'down' || i.state === 'no-address')) out.push('No network link is up');
  // The last diagnosis (braid doctor, the dashboard's Diagnose) stays named until the next one.
  const first = status.doctor?.firstFailing;
  if (first) out.push(`Diagnosis: ${firstSentence(first.message)}${status.doctor!.failing > 1 ? ` (+${status.doctor!.failing - 1} more)` : ''}`);
  return out;
}

function firstSentence(text: string): string {
  const m = /^(.+?[.!?])(\s|$)/.exec(text);
  return m ? m[1] : text;
}

export function trayModel(status: StatusView, lastTick: StatsTick | null, opts: TrayModelOptions = {}): MenuModel {
  const busy = opts.busy === true;
  const running = status.proxy.running;
  const sp = status.systemProxy;
  const line = statusLine(status, lastTick, opts);
  const problems = trayProblems(status);
  // First, and clickable: many StatusNotifier hosts (GNOME's AppIndicator extension among them)
  // open the menu on a left click and never report the click itself, so this is the way in.
  const items: MenuItemModel[] = [{ id: 'open-window', label: 'Open Braid', type: 'normal', enabled: true, action: 'open-window' }, info('status', line)];
  if (running && status.proxy.listen) items.push(info('status.listen', `SOCKS5 + HTTP on ${status.proxy.listen}`));
  // The system proxy's error is shown under its toggle.
  problems.filter((p) => !p.startsWith('System proxy: ')).forEach((p, n) =>
    wrapText(`⚠ ${p}`, REASON_WIDTH, 3).forEach((l, k) => items.push(info(`status.problem.${n}.${k}`, l))));
  items.push(separator('sep.toggles'));

  items.push({
    id: 'proxy',
    label: 'Proxy',
    type: 'checkbox',
    checked: running,
    enabled: !busy,
    action: { command: running ? 'proxy.stop' : 'proxy.start', params: {} },
  });

  // The backend is null when this desktop has no way to set a system proxy (or in headless mode).
  const spAvailable = sp.backend !== null || sp.enabled;
  items.push({
    id: 'system-proxy',
    label: spAvailable ? 'Use as system proxy' : 'Use as system proxy (not available)',
    type: 'checkbox',
    checked: sp.enabled,
    enabled: spAvailable && !busy,
    action: { command: 'systemProxy.set', params: { enabled: !sp.enabled } },
  });
  if (sp.error) wrapText(sp.error, REASON_WIDTH, 3).forEach((l, n) => items.push(info(`system-proxy.error.${n}`, l)));

  // Every app's TCP, not only apps that honour the proxy settings (transparent mode).
  const tp = status.transparent;
  const allApps = tp.enabled && tp.active;
  items.push({
    id: 'all-apps',
    label: 'All apps',
    type: 'checkbox',
    checked: allApps,
    enabled: running && !busy,
    action: { command: 'transparent.set', params: { enabled: !allApps } },
  });
  if (tp.error) wrapText(tp.error, REASON_WIDTH, 3).forEach((l, n) => items.push(info(`all-apps.error.${n}`, l)));

  items.push(pathsSubmenu(status, busy));
  items.push(separator('sep.app'));
  if (opts.launchAtLogin !== undefined && opts.launchAtLogin !== null) {
    items.push({
      id: 'launch-at-login',
      label: 'Launch at login',
      type: 'checkbox',
      checked: opts.launchAtLogin,
      enabled: true,
      action: { setting: 'launchAtLogin', value: !opts.launchAtLogin },
    });
  }
  items.push({ id: 'quit', label: 'Quit Braid', type: 'normal', enabled: true, action: 'quit' });

  const tooltip = [line, ...problems.map((p) => `⚠ ${p}`)].join('\n');
  return { tooltip, icon: !running ? 'off' : problems.length > 0 ? 'warning' : 'on', problems, items };
}

/** Depth-first search by id, for the glue and the tests. */
export function findItem(items: MenuItemModel[], id: string): MenuItemModel | null {
  for (const it of items) {
    if (it.id === id) return it;
    const sub = it.submenu ? findItem(it.submenu, id) : null;
    if (sub) return sub;
  }
  return null;
}

/**
 * KDE Plasma: the "Proxy Settings" group of kioslaverc, written with kwriteconfig5/6 and read with
 * kreadconfig5/6, then a best-effort D-Bus signal so running KIO workers re-read it.
 *
 * The tests run the real kreadconfig5/kwriteconfig5 (Debian's libkf5config-bin) against a
 * kioslaverc in a temporary XDG_CONFIG_HOME (test/sysproxy-kde.test.ts), besides the command and
 * parser checks (test/sysproxy-parsers.test.ts); no Plasma session runs there, so the reload
 * signal to KIO has never reached a real one. On KDE this backend runs inside 'kde+gnome'
 * (composite.ts), since Firefox and GTK apps on KDE read GNOME's settings instead.
 */
import { BraidError } from '../errors';
import { ProxySettings, ProxySnapshot, SystemProxyBackend, jsonEqual } from './backend';
import { ToolCommand, ToolRunner, onPath, runCommands, runTool } from './exec';

export const KDE_FILE = 'kioslaverc';
export const KDE_GROUP = 'Proxy Settings';
/** ProxyType first: on restore it turns Braid off before the rest changes. */
export const KDE_KEYS = ['ProxyType', 'httpProxy', 'httpsProxy', 'socksProxy', 'NoProxyFor', 'ReversedException'] as const;
export type KdeKey = (typeof KDE_KEYS)[number];

/**
 * kreadconfig prints an absent key as an empty line, the same as an empty value; a default nobody
 * would type tells them apart, so a key the user never set is deleted again on restore.
 */
export const KDE_UNSET = '\u0001braid-unset';

export interface KdeTools {
  read: string;
  write: string;
}

export interface KdeSnapshot extends ProxySnapshot {
  /** Key -> value, null where the key was absent. */
  values: { [key: string]: string | null };
}

export function kdeReadCommand(tools: KdeTools, key: string): ToolCommand {
  return { tool: tools.read, args: ['--file', KDE_FILE, '--group', KDE_GROUP, '--key', key, '--default', KDE_UNSET] };
}

export function parseKdeRead(stdout: string): string | null {
  const value = stdout.replace(/\r?\n$/, '');
  return value === KDE_UNSET ? null : value;
}

export function kdeWriteCommand(tools: KdeTools, key: string, value: string | null): ToolCommand {
  const base = ['--file', KDE_FILE, '--group', KDE_GROUP, '--key', key];
  return { tool: tools.write, args: value === null ? [...base, '--delete'] : [...base, value] };
}

/** KIO's "scheme://host port" form (a space, not a colon, before the port). */
export function kdeProxyUrl(scheme: 'http' | 'socks', host: string, port: number): string {
  return `${scheme}://${host.includes(':') ? `[${host}]` : host} ${port}`;
}

export function kdeAppliedValues(s: ProxySettings): { [key in KdeKey]: string } {
  return {
    ProxyType: '1', // manual
    httpProxy: kdeProxyUrl('http', s.host, s.port),
    httpsProxy: kdeProxyUrl('http', s.host, s.port),
    socksProxy: kdeProxyUrl('socks', s.host, s.port),
    NoProxyFor: s.bypass.join(','),
    // With ReversedException=true NoProxyFor would mean "only these use the proxy".
    ReversedException: 'false',
  };
}

export const KDE_NOTIFY: ToolCommand = {
  tool: 'dbus-send',
  args: ['--type=signal', '/KIO/Scheduler', 'org.kde.KIO.Scheduler.reparseSlaveConfiguration', 'string:'],
  bestEffort: true,
};

/** Writes in key order, except that ProxyType goes last on apply and first on restore. */
export function kdeWriteCommands(tools: KdeTools, values: { [key: string]: string | null }, proxyTypeFirst: boolean): ToolCommand[] {
  const rest = KDE_KEYS.filter((k) => k !== 'ProxyType' && k in values);
  const keys = 'ProxyType' in values ? (proxyTypeFirst ? ['ProxyType', ...rest] : [...rest, 'ProxyType']) : rest;
  return [...keys.map((k) => kdeWriteCommand(tools, k, values[k])), KDE_NOTIFY];
}

/** Plasma 6 ships the *6 tools; prefer them where both exist. */
export function findKdeTools(env: NodeJS.ProcessEnv = process.env): KdeTools | null {
  for (const v of ['6', '5']) {
    if (onPath(`kreadconfig${v}`, env) && onPath(`kwriteconfig${v}`, env)) return { read: `kreadconfig${v}`, write: `kwriteconfig${v}` };
  }
  return null;
}

export class KdeBackend implements SystemProxyBackend {
  readonly name = 'kde';
  readonly env: NodeJS.ProcessEnv | undefined;
  private readonly run: ToolRunner;

  constructor(opts: { env?: NodeJS.ProcessEnv; run?: ToolRunner } = {}) {
    this.env = opts.env;
    this.run = opts.run ?? runTool;
  }

  private tools(): KdeTools {
    const t = findKdeTools(this.env ?? process.env);
    if (!t) throw new BraidError('ESYSPROXY_TOOL_MISSING', 'kreadconfig5/kwriteconfig5 (or the *6 versions) are not installed, so the KDE proxy settings cannot be changed');
    return t;
  }

  async available(): Promise<boolean> {
    return findKdeTools(this.env ?? process.env) !== null;
  }

  async read(): Promise<KdeSnapshot> {
    const tools = this.tools();
    const values: { [k: string]: string | null } = {};
    for (const key of KDE_KEYS) {
      const c = kdeReadCommand(tools, key);
      values[key] = parseKdeRead((await this.run(c.tool, c.args, { env: this.env })).stdout);
    }
    return { values };
  }

  async apply(settings: ProxySettings): Promise<void> {
    await runCommands(this.run, kdeWriteCommands(this.tools(), kdeAppliedValues(settings), false), { env: this.env });
  }

  async restore(snapshot: ProxySnapshot): Promise<void> {
    const values = snapshot.values;
    if (!values || typeof values !== 'object' || Array.isArray(values) || Object.values(values).some((v) => v !== null && typeof v !== 'string')) {
      throw new BraidError('ESYSPROXY_BAD_SNAPSHOT', 'the saved KDE proxy settings are not in the expected form; nothing was restored');
    }
    await runCommands(this.run, kdeWriteCommands(this.tools(), values as { [k: string]: string | null }, true), { env: this.env });
  }

  stillApplied(current: ProxySnapshot, applied: ProxySnapshot): boolean {
    return jsonEqual(current.values, applied.values);
  }
}

/**
 * GNOME (and the desktops sharing its settings: Cinnamon, Budgie, Unity, Pantheon) through the real
 * `gsettings` tool. Values are kept as the GVariant text `gsettings get` prints, which `gsettings
 * set` parses back unchanged, so a restore is exact whatever the types and quoting.
 */
import { BraidError } from '../errors';
import { ProxySettings, ProxySnapshot, SystemProxyBackend, jsonEqual } from './backend';
import { ToolCommand, ToolRunner, runCommands, runTool } from './exec';

const ROOT = 'org.gnome.system.proxy';

/**
 * Every key Braid writes, and so every key it snapshots. `mode` comes first so a restore stops
 * pointing at Braid before anything else changes.
 */
export const GNOME_KEYS: readonly (readonly [schema: string, key: string])[] = [
  [ROOT, 'mode'],
  [ROOT, 'ignore-hosts'],
  [`${ROOT}.http`, 'host'],
  [`${ROOT}.http`, 'port'],
  [`${ROOT}.https`, 'host'],
  [`${ROOT}.https`, 'port'],
  [`${ROOT}.socks`, 'host'],
  [`${ROOT}.socks`, 'port'],
];

export interface GnomeSnapshot extends ProxySnapshot {
  /** "schema key" -> GVariant text as printed by `gsettings get`. */
  values: { [schemaKey: string]: string };
}

/** GVariant text for a string: single-quoted, with backslash and quote escaped. */
export function gvariantString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export function gvariantStringArray(items: readonly string[]): string {
  return items.length === 0 ? '@as []' : `[${items.map(gvariantString).join(', ')}]`;
}

/** What Braid's settings look like as GVariant text, per "schema key". */
export function gnomeAppliedValues(s: ProxySettings): { [schemaKey: string]: string } {
  const host = gvariantString(s.host);
  const port = String(s.port);
  return {
    [`${ROOT} mode`]: gvariantString('manual'),
    [`${ROOT} ignore-hosts`]: gvariantStringArray(s.bypass),
    // One listener speaks both SOCKS5 and HTTP, so every protocol points at it.
    [`${ROOT}.http host`]: host,
    [`${ROOT}.http port`]: port,
    [`${ROOT}.https host`]: host,
    [`${ROOT}.https port`]: port,
    [`${ROOT}.socks host`]: host,
    [`${ROOT}.socks port`]: port,
  };
}

/** Commands that write `values`; `mode` last on apply (nothing half-configured is ever live), first on restore. */
export function gnomeSetCommands(values: { [schemaKey: string]: string }, modeFirst: boolean): ToolCommand[] {
  const mode = `${ROOT} mode`;
  const rest = GNOME_KEYS.map(([schema, key]) => `${schema} ${key}`).filter((k) => k !== mode && k in values);
  const keys = mode in values ? (modeFirst ? [mode, ...rest] : [...rest, mode]) : rest;
  return keys.map((k) => {
    const [schema, key] = k.split(' ');
    return { tool: 'gsettings', args: ['set', schema, key, values[k]] };
  });
}

export class GnomeBackend implements SystemProxyBackend {
  readonly name = 'gnome';
  readonly env: NodeJS.ProcessEnv | undefined;
  private readonly run: ToolRunner;

  /** `env` lets tests point gsettings at a keyfile backend in a temporary directory. */
  constructor(opts: { env?: NodeJS.ProcessEnv; run?: ToolRunner } = {}) {
    this.env = opts.env;
    this.run = opts.run ?? runTool;
  }

  async available(): Promise<boolean> {
    try {
      const { stdout } = await this.run('gsettings', ['list-keys', ROOT], { env: this.env });
      return stdout.split('\n').includes('mode');
    } catch {
      return false;
    }
  }

  async read(): Promise<GnomeSnapshot> {
    const values: { [k: string]: string } = {};
    for (const [schema, key] of GNOME_KEYS) {
      const { stdout } = await this.run('gsettings', ['get', schema, key], { env: this.env });
      values[`${schema} ${key}`] = stdout.trim();
    }
    return { values };
  }

  async apply(settings: ProxySettings): Promise<void> {
    await runCommands(this.run, gnomeSetCommands(gnomeAppliedValues(settings), false), { env: this.env });
  }

  async restore(snapshot: ProxySnapshot): Promise<void> {
    const values = snapshot.values;
    if (!values || typeof values !== 'object' || Array.isArray(values) || Object.values(values).some((v) => typeof v !== 'string')) {
      throw new BraidError('ESYSPROXY_BAD_SNAPSHOT', 'the saved GNOME proxy settings are not in the expected form; nothing was restored');
    }
    await runCommands(this.run, gnomeSetCommands(values as { [k: string]: string }, true), { env: this.env });
  }

  stillApplied(current: ProxySnapshot, applied: ProxySnapshot): boolean {
    return jsonEqual(current.values, applied.values);
  }
}

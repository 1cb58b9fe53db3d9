/**
 * macOS through `networksetup`, per enabled network service (Wi-Fi, Ethernet, ...): web (HTTP),
 * secure web (HTTPS) and SOCKS proxies plus the bypass list.
 *
 * There is no macOS here, so only the command construction and output parsing are tested
 * (test/sysproxy-parsers.test.ts, with outputs recorded from networksetup's documented format); this
 * backend has not been run on a Mac. Known limit: for an authenticated proxy of the user's own only
 * server, port and on/off are restored; the credentials stay in the keychain and are not touched.
 */
import { BraidError } from '../errors';
import { Json, ProxySettings, ProxySnapshot, SystemProxyBackend, jsonEqual } from './backend';
import { ToolCommand, ToolRunner, runCommands, runTool } from './exec';

const TOOL = 'networksetup';

export const MAC_KINDS = {
  web: { get: '-getwebproxy', set: '-setwebproxy', state: '-setwebproxystate' },
  secure: { get: '-getsecurewebproxy', set: '-setsecurewebproxy', state: '-setsecurewebproxystate' },
  socks: { get: '-getsocksfirewallproxy', set: '-setsocksfirewallproxy', state: '-setsocksfirewallproxystate' },
} as const;
export type MacKind = keyof typeof MAC_KINDS;
const KINDS = Object.keys(MAC_KINDS) as MacKind[];

export interface MacProxy {
  enabled: boolean;
  server: string;
  port: number;
  authenticated: boolean;
}

export interface MacService {
  web: MacProxy;
  secure: MacProxy;
  socks: MacProxy;
  bypass: string[];
}

export interface MacSnapshot extends ProxySnapshot {
  services: { [name: string]: MacService & { [k: string]: Json } };
}

/** Names of the enabled services; a leading '*' marks a disabled one, the first line is a legend. */
export function parseServiceList(stdout: string): string[] {
  return stdout
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '' && !/^An asterisk/.test(l) && !l.startsWith('*'));
}

export function parseProxyInfo(stdout: string, service: string, kind: MacKind): MacProxy {
  const fields = new Map<string, string>();
  for (const line of stdout.split(/\r?\n/)) {
    const m = /^([^:]+):\s?(.*)$/.exec(line);
    if (m) fields.set(m[1].trim(), m[2].trim());
  }
  const enabled = fields.get('Enabled');
  if (enabled === undefined) {
    throw new BraidError('ESYSPROXY_PARSE', `networksetup ${MAC_KINDS[kind].get} '${service}' printed something unexpected: ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  return {
    enabled: enabled === 'Yes',
    server: fields.get('Server') ?? '',
    port: Number(fields.get('Port') ?? 0) || 0,
    authenticated: (fields.get('Authenticated Proxy Enabled') ?? '0') === '1',
  };
}

export function parseBypass(stdout: string): string[] {
  if (/There aren't any bypass domains/i.test(stdout)) return [];
  return stdout.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
}

export function macReadCommands(service: string): { kind: MacKind | 'bypass'; command: ToolCommand }[] {
  return [
    ...KINDS.map((kind) => ({ kind, command: { tool: TOOL, args: [MAC_KINDS[kind].get, service] } })),
    { kind: 'bypass' as const, command: { tool: TOOL, args: ['-getproxybypassdomains', service] } },
  ];
}

function bypassCommand(service: string, bypass: readonly string[]): ToolCommand {
  // "Empty" is networksetup's word for clearing the list.
  return { tool: TOOL, args: ['-setproxybypassdomains', service, ...(bypass.length ? bypass : ['Empty'])] };
}

export function macApplyCommands(service: string, s: ProxySettings): ToolCommand[] {
  const out: ToolCommand[] = [bypassCommand(service, s.bypass)];
  for (const kind of KINDS) {
    out.push({ tool: TOOL, args: [MAC_KINDS[kind].set, service, s.host, String(s.port)] });
    out.push({ tool: TOOL, args: [MAC_KINDS[kind].state, service, 'on'] });
  }
  return out;
}

/**
 * Puts back one service. A server of the user's own is written back before its on/off state,
 * since -set…proxy switches the proxy on; where there was none, switching off is all there is.
 */
export function macRestoreCommands(service: string, prev: MacService): ToolCommand[] {
  const out: ToolCommand[] = [];
  for (const kind of KINDS) {
    const p = prev[kind];
    if (p.server !== '') out.push({ tool: TOOL, args: [MAC_KINDS[kind].set, service, p.server, String(p.port)] });
    out.push({ tool: TOOL, args: [MAC_KINDS[kind].state, service, p.enabled ? 'on' : 'off'] });
  }
  out.push(bypassCommand(service, prev.bypass));
  return out;
}

export class MacosBackend implements SystemProxyBackend {
  readonly name = 'macos';
  private readonly run: ToolRunner;

  constructor(opts: { run?: ToolRunner } = {}) {
    this.run = opts.run ?? runTool;
  }

  async available(): Promise<boolean> {
    if (process.platform !== 'darwin') return false;
    try {
      await this.services();
      return true;
    } catch {
      return false;
    }
  }

  private async services(): Promise<string[]> {
    return parseServiceList((await this.run(TOOL, ['-listallnetworkservices'])).stdout);
  }

  async read(): Promise<MacSnapshot> {
    const services: MacSnapshot['services'] = {};
    for (const service of await this.services()) {
      const entry: Partial<MacService> = {};
      for (const { kind, command } of macReadCommands(service)) {
        const { stdout } = await this.run(command.tool, command.args);
        if (kind === 'bypass') entry.bypass = parseBypass(stdout);
        else entry[kind] = parseProxyInfo(stdout, service, kind);
      }
      services[service] = entry as MacService & { [k: string]: Json };
    }
    return { services };
  }

  async apply(settings: ProxySettings): Promise<void> {
    for (const service of await this.services()) await runCommands(this.run, macApplyCommands(service, settings));
  }

  async restore(snapshot: ProxySnapshot): Promise<void> {
    const saved = snapshot.services;
    if (!saved || typeof saved !== 'object' || Array.isArray(saved)) {
      throw new BraidError('ESYSPROXY_BAD_SNAPSHOT', 'the saved macOS proxy settings are not in the expected form; nothing was restored');
    }
    // A service removed since (an unplugged adapter) has nothing left to restore.
    const present = new Set(await this.services());
    for (const [service, prev] of Object.entries(saved as { [k: string]: Json })) {
      if (present.has(service)) await runCommands(this.run, macRestoreCommands(service, prev as unknown as MacService));
    }
  }

  /** Services added or removed since do not count as the user changing their proxy. */
  stillApplied(current: ProxySnapshot, applied: ProxySnapshot): boolean {
    const cur = (current.services ?? {}) as { [k: string]: Json };
    const app = (applied.services ?? {}) as { [k: string]: Json };
    return Object.keys(app).filter((s) => s in cur).every((s) => jsonEqual(cur[s], app[s]));
  }
}

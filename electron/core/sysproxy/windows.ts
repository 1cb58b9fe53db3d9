/**
 * Windows: the per-user WinINet settings under HKCU\...\Internet Settings, read with `reg query`,
 * written with `reg add`/`reg delete`, then InternetSetOption(SETTINGS_CHANGED, REFRESH) so running
 * programs pick the change up without a restart.
 *
 * There is no Windows here, so only the command construction and output parsing are tested
 * (test/sysproxy-parsers.test.ts, with recorded `reg query` output); the backend has not been run on
 * Windows. Known limits: the refresh is best effort (it needs PowerShell; without it programs see the
 * change when they next read the settings), and the Settings app's binary copy under
 * Connections\DefaultConnectionSettings is left alone, so that page may show stale values.
 */
import { BraidError } from '../errors';
import { ProxySettings, ProxySnapshot, SystemProxyBackend, hostPort, jsonEqual } from './backend';
import { ToolCommand, ToolRunner, runCommands, runTool } from './exec';

export const WIN_KEY = 'HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings';
/** AutoConfigURL too: a PAC script of the user's own would win over ProxyServer, so Braid removes it while on. */
export const WIN_VALUES = ['ProxyEnable', 'ProxyServer', 'ProxyOverride', 'AutoConfigURL'] as const;
export type WinValueName = (typeof WIN_VALUES)[number];

export interface RegValue {
  type: string;
  data: string;
}

export interface WindowsSnapshot extends ProxySnapshot {
  values: { [name: string]: { type: string; data: string } | null };
}

/** INTERNET_OPTION_SETTINGS_CHANGED (39) then INTERNET_OPTION_REFRESH (37), via an inline P/Invoke. */
export const WIN_REFRESH_SCRIPT = [
  "$sig = '[DllImport(\"wininet.dll\", SetLastError = true)] public static extern bool InternetSetOption(IntPtr h, int o, IntPtr b, int l);'",
  '$t = Add-Type -MemberDefinition $sig -Name WinInet -Namespace BraidSysProxy -PassThru',
  '[void]$t::InternetSetOption([IntPtr]::Zero, 39, [IntPtr]::Zero, 0)',
  '[void]$t::InternetSetOption([IntPtr]::Zero, 37, [IntPtr]::Zero, 0)',
].join('; ');

export const WIN_REFRESH: ToolCommand = {
  tool: 'powershell.exe',
  args: ['-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-Command', WIN_REFRESH_SCRIPT],
  bestEffort: true,
};

export const WIN_QUERY: ToolCommand = { tool: 'reg', args: ['query', WIN_KEY] };

/**
 * The values of the key itself from `reg query KEY`: lines of four-space-separated name, type and
 * data, until the subkeys (lines starting with HKEY_) that reg lists after them.
 */
export function parseRegQuery(stdout: string): Map<string, RegValue> {
  const values = new Map<string, RegValue>();
  let inKey = false;
  for (const line of stdout.split(/\r?\n/)) {
    if (/^HKEY_/i.test(line)) {
      if (inKey) break;
      inKey = true;
      continue;
    }
    const m = /^ {4}(.+?) {4}(REG_[A-Z_]+)(?: {4}(.*))?$/.exec(line);
    if (m) values.set(m[1], { type: m[2], data: m[3] ?? '' });
  }
  return values;
}

export function windowsSnapshotFromQuery(stdout: string): WindowsSnapshot {
  const all = parseRegQuery(stdout);
  const values: WindowsSnapshot['values'] = {};
  for (const name of WIN_VALUES) values[name] = all.get(name) ?? null;
  return { values };
}

/** WinINet's bypass syntax has wildcards, not CIDR: octet-aligned prefixes become "10.*". */
export function windowsBypass(bypass: readonly string[]): string {
  const out: string[] = [];
  for (const b of bypass) {
    const cidr = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(8|16|24|32)$/.exec(b);
    if (cidr) {
      const keep = Number(cidr[5]) / 8;
      out.push(keep === 4 ? cidr.slice(1, 5).join('.') : [...cidr.slice(1, 1 + keep), '*'].join('.'));
    } else if (b.includes(':') && !b.startsWith('[')) {
      out.push(`[${b}]`);
    } else {
      out.push(b);
    }
  }
  return out.join(';');
}

function regSet(name: string, v: RegValue | null): ToolCommand {
  if (v === null) return { tool: 'reg', args: ['delete', WIN_KEY, '/v', name, '/f'] };
  // reg query prints DWORDs as 0x…; reg add wants the number.
  const data = v.type === 'REG_DWORD' && /^0x[0-9a-f]+$/i.test(v.data) ? String(parseInt(v.data, 16)) : v.data;
  return { tool: 'reg', args: ['add', WIN_KEY, '/v', name, '/t', v.type, '/d', data, '/f'] };
}

export function windowsApplyCommands(s: ProxySettings, current: WindowsSnapshot): ToolCommand[] {
  const out: ToolCommand[] = [
    // One address for every protocol: Braid speaks HTTP CONNECT there, and WinINet's "socks=" form
    // means SOCKS4 to many programs.
    regSet('ProxyServer', { type: 'REG_SZ', data: hostPort(s.host, s.port) }),
    regSet('ProxyOverride', { type: 'REG_SZ', data: windowsBypass(s.bypass) }),
  ];
  if (current.values.AutoConfigURL) out.push(regSet('AutoConfigURL', null));
  out.push(regSet('ProxyEnable', { type: 'REG_DWORD', data: '1' }), WIN_REFRESH);
  return out;
}

/** ProxyEnable first so that nothing points at Braid while the rest is written back. */
export function windowsRestoreCommands(prev: WindowsSnapshot, current: WindowsSnapshot): ToolCommand[] {
  const out: ToolCommand[] = [];
  for (const name of ['ProxyEnable', 'ProxyServer', 'ProxyOverride', 'AutoConfigURL'] as const) {
    const v = prev.values[name] ?? null;
    // Deleting what is not there makes reg fail; nothing to do then.
    if (v === null && !current.values[name]) continue;
    out.push(regSet(name, v));
  }
  out.push(WIN_REFRESH);
  return out;
}

export class WindowsBackend implements SystemProxyBackend {
  readonly name = 'windows';
  private readonly run: ToolRunner;

  constructor(opts: { run?: ToolRunner } = {}) {
    this.run = opts.run ?? runTool;
  }

  async available(): Promise<boolean> {
    if (process.platform !== 'win32') return false;
    try {
      await this.read();
      return true;
    } catch {
      return false;
    }
  }

  async read(): Promise<WindowsSnapshot> {
    return windowsSnapshotFromQuery((await this.run(WIN_QUERY.tool, WIN_QUERY.args)).stdout);
  }

  async apply(settings: ProxySettings): Promise<void> {
    // PowerShell's Add-Type compiles C#, which takes seconds on a cold machine.
    await runCommands(this.run, windowsApplyCommands(settings, await this.read()), { timeoutMs: 20_000 });
  }

  async restore(snapshot: ProxySnapshot): Promise<void> {
    const values = snapshot.values;
    if (!values || typeof values !== 'object' || Array.isArray(values)) {
      throw new BraidError('ESYSPROXY_BAD_SNAPSHOT', 'the saved Windows proxy settings are not in the expected form; nothing was restored');
    }
    await runCommands(this.run, windowsRestoreCommands(snapshot as WindowsSnapshot, await this.read()), { timeoutMs: 20_000 });
  }

  stillApplied(current: ProxySnapshot, applied: ProxySnapshot): boolean {
    return jsonEqual(current.values, applied.values);
  }
}

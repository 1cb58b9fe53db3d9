/**
 * `braid paths`: what the interfaces are and which MPTCP endpoints exist (Braid's and others');
 * `braid paths set IFACE use|backup|off` to change the policy; `braid paths daemon` to run path
 * management on its own, e.g. as the one privileged piece (CAP_NET_ADMIN) of a desktop install.
 */
import fs from 'node:fs';
import { defaultConfigFile, defaultStateDir } from '../config/locations';
import { loadConfig, updateConfigFile, watchConfigFile } from '../config/load';
import type { BraidConfig, PathPolicy } from '../config/schema';
import { errorMessage } from '../errors';
import type { Logger } from '../proxy/session';
import { PATH_POLICIES } from '../paths/policy';
import { ruleLabel, type PathRule } from '../paths/rules';
import { hasNetAdmin, PathManager, PRIVILEGE_HELP, type PathStatus } from '../paths/manager';
import { pathsStamp, readManagerRecord } from '../paths/records';
import { snapshot } from '../paths/inventory';
import type { PathsConfig } from '../paths/policy';
import { CAP_USAGE, capFromArgs, capText, currentQuality, currentUsage, formatUsage, saveCap } from './paths-usage';
import type { PathQualityView, PathUsageView } from '../contract';
import { formatSize } from '../paths/caps';
import { recoverAtStart, stderrLogger, str, untilSignal, usageError, type Command, type Values } from './common';

function configFile(values: Values): string {
  return str(values, 'config') ?? defaultConfigFile();
}

function readConfig(file: string): BraidConfig {
  return loadConfig({ file: fs.existsSync(file) ? file : undefined });
}

type ListedPath = PathStatus['interfaces'][number] & { usage?: PathUsageView | null; quality?: PathQualityView | null };

/** "data 3.2 MB of 10 MB/day" and "RTT 42 ms ±3, 0.1 % retransmits" for the notes under the table. */
function measures(i: ListedPath): string | null {
  const parts: string[] = [];
  if (i.usage?.cap) parts.push(`data ${formatSize(i.usage.used)} of ${formatSize(i.usage.cap.bytes)}/${i.usage.cap.period}${i.usage.reached ? ' (reached)' : ''}`);
  else if (i.usage && i.usage.used > 0) parts.push(`data today ${formatSize(i.usage.used)}`);
  const q = i.quality;
  if (q && q.rttMs !== null) parts.push(`RTT ${q.rttMs} ms${q.rttVarMs !== null ? ` ±${q.rttVarMs}` : ''}${q.retransPercent !== null ? `, ${q.retransPercent} % retransmits` : ''}`);
  return parts.length ? parts.join('; ') : null;
}

export function formatPaths(s: PathStatus): string {
  const rows = [['INTERFACE', 'KIND', 'STATE', 'POLICY', 'ADDRESSES', 'ENDPOINTS']];
  for (const i of s.interfaces) {
    rows.push([
      i.name + (i.defaultRoute ? ' *' : ''),
      i.kind + (i.ssid ? ` (${i.ssid}${i.signal !== null ? ` ${i.signal}` : ''})` : ''),
      i.state,
      i.policy + (i.policyExplicit ? '' : ' (default)') + (i.effective !== i.policy ? ` → ${i.effective}` : ''),
      i.addresses.map((a) => a.address).join(',') || '-',
      i.endpoints.map((e) => `${e.id}:${e.address}[${e.flags.join(',')}]${e.owner === 'braid' ? '' : ' elsewhere'}`).join(' ') || '-',
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  '));
  const notes = s.interfaces.filter((i) => i.note || i.demotion);
  if (notes.length) lines.push('', ...notes.map((i) => `${i.name}: ${i.note ?? ''}${i.demotion ? `${i.note ? '; ' : ''}demoted to ${i.effective}: ${i.demotion.reason}` : ''}`));
  const measured = (s.interfaces as ListedPath[]).map((i) => [i.name, measures(i)] as const).filter(([, m]) => m);
  if (measured.length) lines.push('', ...measured.map(([n, m]) => `${n}: ${m}`));
  lines.push('', '* carries a default route');
  lines.push(s.manager === 'userspace'
    ? 'subflows: opened per connection by Braid (it is the MPTCP path manager here)'
    : `subflows: the kernel's path manager, from endpoints${s.managerNote ? ` (${s.managerNote})` : ''}`);
  if (s.limits && s.manager === 'kernel') lines.push(`kernel limits: ${s.limits.subflows} extra subflows, ${s.limits.addAddrAccepted} accepted ADD_ADDR per connection`);
  if (s.foreign.length) lines.push(`endpoints Braid did not create (left alone): ${s.foreign.map((e) => `${e.id}:${e.address}`).join(' ')}`);
  if (s.reason) lines.push(`note: ${s.reason}`);
  return lines.join('\n') + '\n';
}

export function formatRules(rules: PathRule[]): string {
  if (rules.length === 0) return 'no per-destination rules (paths.rules): every connection may use every path its policy allows\n';
  const lines = rules.map((r, i) => {
    const m = [r.match.host && `host *.${r.match.host}`, r.match.cidr && `address ${r.match.cidr}`, r.match.port !== undefined && `port ${Array.isArray(r.match.port) ? r.match.port.join('-') : r.match.port}`].filter(Boolean).join(', ');
    return `${i + 1}. ${ruleLabel(r, i)}: ${m} → ${r.paths.join(', ')}${r.backup.length ? `; backup ${r.backup.join(', ')}` : ''}`;
  });
  return lines.join('\n') + '\n(the first rule that matches a connection decides; other paths carry none of it)\n';
}

/**
 * Path management on its own, from the policy in `file` (followed as it changes): `braid paths
 * daemon`, and `braid helper --paths-config`. Returns the function that stops it (removing endpoints).
 */
export function startPathsDaemon(file: string, stateDir: string, log: Logger, onManager?: (m: PathManager) => void): () => void {
  let cfg = readConfig(file);
  const manager = new PathManager({ config: () => cfg.paths, stateDir, log });
  manager.start();
  onManager?.(manager);
  const s = manager.status();
  if (!s.managed && s.reason) log.warn(s.reason);
  process.stdout.write(`braid: managing MPTCP endpoints (policy from ${file})\n`);
  const unwatch = watchConfigFile(file, (next) => {
    cfg = next;
    manager.reconcileNow();
  }, (err) => log.warn(`config file ${file}: ${errorMessage(err)} (keeping the previous policy)`));
  // Every watch here is unref'd (inside braid up the proxy keeps the process alive): without a
  // handle of its own the daemon would exit at once, leaving its endpoints behind.
  const alive = setInterval(() => {}, 2 ** 31 - 1);
  return () => {
    clearInterval(alive);
    unwatch();
    manager.stop();
  };
}

const CONFIRM_MS = 3000;

/**
 * What the running manager (`braid up` or `braid paths daemon`) did with the new policy for
 * `iface`, from the record it writes after each reconcile; never a guess.
 */
async function appliedOutcome(stateDir: string, iface: string, cfg: PathsConfig, since: number): Promise<string> {
  if (!snapshot().some((i) => i.name === iface)) return 'no interface of that name now; the policy applies when it appears';
  if (!readManagerRecord(stateDir)) {
    return `not applied yet: no running braid manages endpoints here (it applies when \`braid up\` or \`braid paths daemon\` starts with --state-dir ${stateDir})`;
  }
  const stamp = pathsStamp(cfg);
  const deadline = Date.now() + CONFIRM_MS;
  for (;;) {
    const rec = readManagerRecord(stateDir);
    if (!rec) return 'not applied: the running braid stopped';
    if (rec.configStamp === stamp && Date.parse(rec.at) >= since - 1) {
      const mine = rec.interfaces?.[iface];
      if (mine) return mine.note;
      if (!rec.managed && rec.reason) return `not applied: ${rec.reason}`;
      return 'applied (no details reported)';
    }
    if (Date.now() >= deadline) return `not confirmed: braid pid ${rec.pid} did not report applying it within ${CONFIRM_MS / 1000} s`;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function runPaths(values: Values, positionals: string[]): Promise<number> {
  const [sub = 'list', ...args] = positionals;
  const file = configFile(values);
  const stateDir = str(values, 'state-dir') ?? defaultStateDir();
  const log = stderrLogger(values.verbose === true);
  await recoverAtStart(stateDir, log);

  if (sub === 'list') {
    if (args.length) throw usageError(`'braid paths list' takes no arguments`);
    const cfg = readConfig(file);
    const own = await new PathManager({ config: () => cfg.paths, stateDir, log }).detailedStatus();
    // This process only looks; whether endpoints are managed is up to the braid that runs (if any).
    const running = readManagerRecord(stateDir);
    const status: PathStatus = running
      ? { ...own, managed: running.managed, reason: running.reason, manager: running.manager ?? own.manager, managerNote: running.managerNote ?? null, interfaces: own.interfaces.map((i) => ({ ...i, note: running.interfaces?.[i.name]?.note ?? null })) }
      : {
          ...own,
          managed: false,
          reason: !cfg.paths.enabled
            ? 'path management is disabled in the config (paths.enabled = false)'
            : hasNetAdmin()
              ? `no running braid manages the endpoints (start \`braid up\` or \`braid paths daemon\` with --state-dir ${stateDir})`
              : PRIVILEGE_HELP,
        };
    if (!status.managed) {
      status.interfaces = status.interfaces.map((i) => (i.state === 'active' || i.state === 'backup' ? { ...i, state: 'unmanaged' } : i));
    }
    // Data use (counted by a running braid, or as it last saved it) and quality (measured by a running braid).
    const usage = await currentUsage(stateDir, cfg.paths.caps);
    const quality = await currentQuality(stateDir);
    status.interfaces = status.interfaces.map((i): ListedPath => ({ ...i, usage: usage.interfaces.find((u) => u.name === i.name) ?? null, quality: quality[i.name] ?? null }));
    process.stdout.write(values.json === true ? JSON.stringify(status, null, 2) + '\n' : formatPaths(status));
    return 0;
  }
  if (sub === 'set') {
    const [iface, policy] = args;
    if (!iface || !policy || args.length !== 2) throw usageError(`usage: braid paths set IFACE ${PATH_POLICIES.join('|')}`);
    if (!PATH_POLICIES.includes(policy as PathPolicy)) throw usageError(`policy must be one of ${PATH_POLICIES.join(', ')}, got '${policy}'`);
    const since = Date.now();
    const saved = updateConfigFile(file, (cur) => ({ ...cur, paths: { ...cur.paths, interfaces: { ...(cur.paths?.interfaces ?? {}), [iface]: policy as PathPolicy } } }));
    process.stdout.write(`braid: ${iface} policy '${policy}' saved in ${file}
`);
    process.stdout.write(`braid: ${iface}: ${await appliedOutcome(stateDir, iface, saved.paths, since)}
`);
    return 0;
  }
  if (sub === 'cap') {
    const { iface, cap } = capFromArgs(args, values);
    const saved = saveCap(file, iface, cap);
    process.stdout.write(cap ? `braid: ${iface} cap ${capText(cap)} saved in ${file}\n` : `braid: ${iface} cap removed in ${file}\n`);
    const u = (await currentUsage(stateDir, saved.caps)).interfaces.find((x) => x.name === iface);
    if (u && cap) process.stdout.write(`braid: ${iface}: ${formatSize(u.used)} used since ${u.from}${u.used >= cap.bytes ? ' (at the cap already)' : ''}\n`);
    return 0;
  }
  if (sub === 'usage') {
    if (args.length) throw usageError(`'braid paths usage' takes no arguments`);
    const u = await currentUsage(stateDir, readConfig(file).paths.caps);
    process.stdout.write(values.json === true ? JSON.stringify(u, null, 2) + '\n' : formatUsage(u));
    return 0;
  }
  if (sub === 'rules') {
    if (args.length) throw usageError(`'braid paths rules' takes no arguments (edit them in the dashboard or in paths.rules of ${file})`);
    const rules = readConfig(file).paths.rules;
    if (values.json === true) process.stdout.write(JSON.stringify(rules, null, 2) + '\n');
    else process.stdout.write(formatRules(rules));
    return 0;
  }
  if (sub === 'daemon') {
    // Handled before the daemon says it is managing endpoints (its ready line).
    let stop = (): void => {};
    const stopped = untilSignal(async () => stop(), log);
    stop = startPathsDaemon(file, stateDir, log);
    return stopped;
  }
  throw usageError(`unknown 'braid paths' subcommand '${sub}' (list, set, cap, usage, rules, daemon)`);
}

export const paths: Command = {
  summary: 'list interfaces and MPTCP endpoints; set a per-interface policy; run path management alone',
  usage: `braid paths [list] [--json] | braid paths set IFACE ${PATH_POLICIES.join('|')} | braid paths rules [--json] | ${CAP_USAGE} | braid paths usage [--json] | braid paths daemon   [--config FILE] [--state-dir DIR] [--verbose]`,
  options: {
    json: { type: 'boolean' },
    'reset-day': { type: 'string' },
    'at-cap': { type: 'string' },
    config: { type: 'string' },
    'state-dir': { type: 'string' },
    verbose: { type: 'boolean', short: 'v' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: true,
  run: runPaths,
};

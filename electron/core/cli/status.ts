/** `braid status`: asks a running `braid up` through its control API. */
import { defaultStateDir } from '../config/locations';
import type { ConnectionView, ProgramPathView, StatsTick, StatusView } from '../contract';
import { callControl, readEndpoint } from '../control/discovery';
import { recoverAtStart, stderrLogger, str, type Command, type Values } from './common';

const mbit = (bytesPerSecond: number): string => `${((bytesPerSecond * 8) / 1e6).toFixed(1)} Mbit/s`;
const mbytes = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

const CONNECTIONS_SHOWN = 15;

/** Per program, its bytes on each path: "curl  wlan0 ↓ 30.0 MB ↑ 0.1 MB · wwan0 ↓ 9.8 MB ↑ 0.0 MB". */
export function formatPrograms(rows: ProgramPathView[]): string[] {
  const by = new Map<string, ProgramPathView[]>();
  for (const r of rows) by.set(r.program, [...(by.get(r.program) ?? []), r]);
  const total = (rs: ProgramPathView[]): number => rs.reduce((a, r) => a + r.up + r.down, 0);
  const ordered = [...by].sort((a, b) => total(b[1]) - total(a[1])).slice(0, CONNECTIONS_SHOWN);
  if (!ordered.length) return [];
  return ['by program (since start):', ...ordered.map(([prog, rs]) => `  ${prog.padEnd(16)} ${rs.map((r) => `${r.path} ↓ ${mbytes(r.down)} ↑ ${mbytes(r.up)}`).join(' · ')}`)];
}

export function formatStatus(s: StatusView, tick: StatsTick | null = null, connections: ConnectionView[] = [], programs: ProgramPathView[] = []): string {
  const lines = [
    `braid ${s.version}`,
    `proxy:        ${s.proxy.running ? `on, ${s.proxy.listen}` : 'off'} (dial ${s.proxy.dial}${s.proxy.mptcp.supported ? '' : `; MPTCP unavailable: ${s.proxy.mptcp.reason}`})`,
    `relay:        ${s.relay ? `${s.relay.name ?? s.relay.host}:${s.relay.port} ${s.relay.state}${s.relay.error ? ` (${s.relay.error})` : ''}` : 'none (direct)'}`,
    `connections:  ${s.connections.active} active, ${s.connections.total} since start`,
    `system proxy: ${s.systemProxy.enabled ? `on (${s.systemProxy.backend})` : 'off'}`,
    `all apps:     ${s.transparent.enabled && s.transparent.active ? `on, every app's TCP through braid (${s.transparent.via === 'helper' ? 'rules by braid helper' : 'rules by braid'})` : s.transparent.error ? `off: ${s.transparent.error}` : 'off'}${s.transparent.scopes ? `; ${s.transparent.scopes} braid run program(s)` : ''}`,
    `paths:        ${s.paths.managed ? 'managed' : `not managed${s.paths.reason ? `: ${s.paths.reason}` : ''}`}`,
  ];
  if (s.systemChanges.length) {
    lines.push('changed on this system (put back when Braid exits, by its guardian if it is killed):');
    for (const c of s.systemChanges) lines.push(`  ${c.description}${c.pid !== s.pid ? ` (braid pid ${c.pid})` : ''}`);
  }
  for (const i of s.paths.interfaces) {
    lines.push(`  ${i.name.padEnd(12)} ${i.kind.padEnd(9)} ${i.state.padEnd(18)} policy ${i.policy}${i.demotion ? ` → ${i.effective} (${i.demotion.reason})` : ''}${i.addresses.length ? `  ${i.addresses.map((a) => a.address).join(', ')}` : ''}`);
    const q = i.quality;
    const u = i.usage;
    const extra = [
      q && q.rttMs !== null ? `RTT ${q.rttMs} ms${q.rttVarMs !== null ? ` ±${q.rttVarMs}` : ''}${q.retransPercent !== null ? `, ${q.retransPercent} % retransmits` : ''}` : null,
      u?.cap ? `data ${mbytes(u.used)} of ${mbytes(u.cap.bytes)}/${u.cap.period}${u.reached ? ' (cap reached)' : ''}` : null,
    ].filter(Boolean);
    if (extra.length) lines.push(`  ${''.padEnd(12)} ${extra.join('; ')}`);
  }
  if (tick) {
    const system = tick.system.mptcpSockets === null ? '' : ` (MPTCP sockets on this host: ${tick.system.mptcpSockets})`;
    lines.push(`traffic:      ${tick.connections} connection${tick.connections === 1 ? '' : 's'} sampled${system}`);
    for (const p of tick.paths) {
      lines.push(`  ${p.path.padEnd(12)} down ${mbit(p.downBps).padStart(13)}  up ${mbit(p.upBps).padStart(13)}  total down ${mbytes(p.totalDown)} up ${mbytes(p.totalUp)}` +
        `${p.rttUs !== null ? `  rtt ${(p.rttUs / 1000).toFixed(1)} ms` : ''}  ${p.subflows} subflow${p.subflows === 1 ? '' : 's'}`);
    }
  }
  if (connections.length) {
    const shown = [...connections].sort((a, b) => b.bytesDown + b.bytesUp - (a.bytesDown + a.bytesUp)).slice(0, CONNECTIONS_SHOWN);
    lines.push(`open connections${connections.length > shown.length ? ` (the ${shown.length} busiest of ${connections.length})` : ''}:`);
    for (const c of shown) {
      const who = c.program ? `${c.program.name} (${c.program.pid})` : c.client;
      lines.push(`  ${String(c.id).padStart(5)}  ${who.padEnd(22)} -> ${(c.destination ?? '-').padEnd(28)} ${c.protocol ?? '-'} ${c.transport}  down ${mbytes(c.bytesDown)} up ${mbytes(c.bytesUp)}`);
    }
  }
  lines.push(...formatPrograms(programs));
  return lines.join('\n') + '\n';
}

async function runStatus(values: Values): Promise<number> {
  const stateDir = str(values, 'state-dir') ?? defaultStateDir();
  await recoverAtStart(stateDir, stderrLogger(false));
  const ep = readEndpoint(stateDir);
  const status = await callControl<StatusView>(ep, 'status');
  const history = await callControl<StatsTick[]>(ep, 'stats.history', { seconds: 5 });
  const connections = await callControl<ConnectionView[]>(ep, 'connections.list');
  // A braid from before per-program totals does not know the command: the rest still shows.
  const programs = await callControl<ProgramPathView[]>(ep, 'stats.programs').catch(() => [] as ProgramPathView[]);
  const last = history[history.length - 1] ?? null;
  if (values.json === true) process.stdout.write(JSON.stringify({ ...status, stats: last, connectionsList: connections, byProgram: programs }, null, 2) + '\n');
  else process.stdout.write(formatStatus(status, last, connections, programs));
  return 0;
}

export const status: Command = {
  summary: 'show what a running braid up is doing (through its control API)',
  usage: 'braid status [--json] [--state-dir DIR]',
  options: {
    json: { type: 'boolean' },
    'state-dir': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  run: runStatus,
};

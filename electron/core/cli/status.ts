/** `braid status`: asks a running `braid up` through its control API. */
import { defaultStateDir } from '../config/locations';
import type { StatusView } from '../contract';
import { callControl, readEndpoint } from '../control/discovery';
import { str, type Command, type Values } from './common';

export function formatStatus(s: StatusView): string {
  const lines = [
    `braid ${s.version}`,
    `proxy:        ${s.proxy.running ? `on, ${s.proxy.listen}` : 'off'} (dial ${s.proxy.dial}${s.proxy.mptcp.supported ? '' : `; MPTCP unavailable: ${s.proxy.mptcp.reason}`})`,
    `relay:        ${s.relay ? `${s.relay.name ?? s.relay.host}:${s.relay.port} ${s.relay.state}${s.relay.error ? ` (${s.relay.error})` : ''}` : 'none (direct)'}`,
    `connections:  ${s.connections.active} active, ${s.connections.total} since start`,
    `system proxy: ${s.systemProxy.enabled ? `on (${s.systemProxy.backend})` : 'off'}`,
    `paths:        ${s.paths.managed ? 'managed' : `not managed${s.paths.reason ? `: ${s.paths.reason}` : ''}`}`,
  ];
  for (const i of s.paths.interfaces) {
    lines.push(`  ${i.name.padEnd(12)} ${i.kind.padEnd(9)} ${i.state.padEnd(18)} policy ${i.policy}${i.addresses.length ? `  ${i.addresses.map((a) => a.address).join(', ')}` : ''}`);
  }
  return lines.join('\n') + '\n';
}

async function runStatus(values: Values): Promise<number> {
  const ep = readEndpoint(str(values, 'state-dir') ?? defaultStateDir());
  const status = await callControl<StatusView>(ep, 'status');
  if (values.json === true) {
    const history = await callControl<unknown[]>(ep, 'stats.history', { seconds: 5 });
    process.stdout.write(JSON.stringify({ ...status, stats: history[history.length - 1] ?? null }, null, 2) + '\n');
  } else {
    process.stdout.write(formatStatus(status));
  }
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

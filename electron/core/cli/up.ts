/** `braid up`: the proxy (and path management, and the relay client when configured) until a signal. */
import { defaultConfigFile, defaultStateDir } from '../config/locations';
import { loadConfig } from '../config/load';
import type { ConfigInput, DialMode } from '../config/schema';
import { startDesktopRuntime } from '../desktop/runtime';
import { BraidError } from '../errors';
import { parseRelayLink } from '../relay/share-link';
import { parseHostPort, parsePort, stderrLogger, str, untilSignal, usageError, type Command, type Values } from './common';
import { relayLinkFromFlags } from './secret-input';
import { checkFlags, controlStartError, proxyStartError, warnReadableConfig } from './up-checks';

async function runUp(values: Values): Promise<number> {
  const proxy: NonNullable<ConfigInput['proxy']> = {};
  const overrides: ConfigInput = { proxy };
  const host = str(values, 'host');
  if (host !== undefined) proxy.host = host;
  const port = str(values, 'port');
  if (port !== undefined) proxy.port = parsePort(port, 'port');
  const dial = str(values, 'dial');
  if (dial !== undefined) {
    if (dial !== 'mptcp' && dial !== 'tcp') throw usageError(`--dial must be 'mptcp' or 'tcp', got '${dial}'`);
    proxy.dial = dial as DialMode;
  }
  const auth = str(values, 'auth');
  if (auth !== undefined) {
    const colon = auth.indexOf(':');
    if (colon <= 0 || colon === auth.length - 1) throw usageError(`--auth must be USER:PASS with both parts non-empty`);
    proxy.auth = { username: auth.slice(0, colon), password: auth.slice(colon + 1) };
  }
  const log = stderrLogger(values.verbose === true);
  const relay = await relayLinkFromFlags(values, log);
  if (relay) overrides.relay = { link: relay.link };
  if (values.transparent === true) overrides.transparent = { enabled: true };
  const paths = str(values, 'paths');
  if (paths !== undefined && paths !== 'on' && paths !== 'off') throw usageError(`--paths must be 'on' or 'off', got '${paths}'`);
  if (paths !== undefined) overrides.paths = { enabled: paths === 'on' };
  const controlFlag = str(values, 'control');
  if (controlFlag === 'off') overrides.control = { enabled: false };
  else if (controlFlag !== undefined) {
    const { host: chost, port: cport } = parseHostPort(controlFlag, 'control');
    overrides.control = { enabled: true, host: chost, port: cport };
  }
  checkFlags(overrides, relay?.flag ?? '--relay');

  // An explicit --config must exist (its absence is a usage error naming it); otherwise the default
  // file is read when present, and is where changes made at run time are saved.
  const explicit = str(values, 'config');
  if (explicit !== undefined) loadConfig({ file: explicit, overrides });
  const configFile = explicit ?? defaultConfigFile();
  warnReadableConfig(configFile, log);
  const stateDir = str(values, 'state-dir') ?? defaultStateDir();
  const systemProxy = values['system-proxy'] === true;

  // The desktop app runs the same runtime; headless, the system proxy is touched only when asked.
  const rt = await startDesktopRuntime({
    configFile,
    stateDir,
    log,
    overrides,
    backend: systemProxy ? undefined : null,
    restoreHooks: systemProxy,
    settings: { proxyOnLaunch: true, systemProxyOnLaunch: systemProxy },
    controlChosenBy: controlFlag !== undefined && controlFlag !== 'off' ? '--control' : undefined,
  });
  const { service, control } = rt;
  const addr = service.proxy?.address;
  if (!addr) {
    await rt.shutdown();
    throw proxyStartError(rt.proxyError, service.config.proxy);
  }
  if (controlFlag !== undefined && controlFlag !== 'off' && !control) {
    await rt.shutdown();
    throw controlStartError(rt.controlError, controlFlag);
  }
  for (const p of rt.problems) log.warn(p);
  if (systemProxy && !rt.systemProxy.view().enabled) log.warn(`--system-proxy: ${rt.systemProxy.view().error ?? 'not set'}`);
  const tp = service.transparent.view();
  if (service.config.transparent.enabled && !tp.active) {
    // Asked for every app and not getting it is not a state to keep running in silently.
    await rt.shutdown();
    throw new BraidError('ETRANSPARENT', `transparent mode did not start: ${tp.error ?? 'unknown reason'}`);
  }
  service.proxy!.tracker.on('closed', (c) => {
    const dest = c.destination ? `${c.destination.host}:${c.destination.port}${c.destination.address ? ` (${c.destination.address})` : ''}` : '-';
    const program = c.program ? ` (${c.program.name}, pid ${c.program.pid})` : '';
    log.info(`connection ${c.id} closed: ${c.protocol ?? 'unknown'} ${c.client.address}:${c.client.port}${program} -> ${dest} transport ${c.transport} up ${c.bytesUp} down ${c.bytesDown}`);
  });
  service.paths?.on('mptcp', (e) => {
    if (e.type === 'overflow' || e.type === 'error' || e.type === 'unknown') return;
    const f = e as { saddr?: string; daddr?: string; sport?: number; dport?: number; token?: number; ifname?: string | null };
    const ends = f.saddr ? ` ${f.saddr}:${f.sport} -> ${f.daddr}:${f.dport}` : '';
    log.debug(`mptcp ${e.type} token ${f.token ?? '-'}${ends}${f.ifname ? ` dev ${f.ifname}` : ''}`);
  });
  // Signals are handled before anything says the proxy is ready: whoever reads that line may stop
  // it at once, and a SIGTERM with no handler yet would end it without putting anything back.
  const stopped = untilSignal(async () => {
    await rt.shutdown();
  }, log);
  // Nothing changes on the system silently: what this start changed, in one line each.
  const changes = service.systemChanges().filter((c) => c.pid === process.pid);
  if (changes.length) {
    process.stdout.write(`braid: changed on this system (all put back on exit, by a guardian process if braid is killed):\n`);
    for (const c of changes) process.stdout.write(`braid:   ${c.description}\n`);
    if (changes.some((c) => c.kind === 'mptcp-path-manager')) process.stdout.write('braid:   (`--paths off` leaves MPTCP path management alone; paths.manager = "kernel" keeps the kernel\'s path manager)\n');
    else if (changes.some((c) => c.kind === 'mptcp-endpoints')) process.stdout.write('braid:   (`--paths off` leaves MPTCP endpoints and limits alone)\n');
  }
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const link = service.config.relay.link;
  const via = link ? `, via relay ${parseRelayLink(link).host}` : '';
  process.stdout.write(`braid: proxy listening on ${shown}:${addr.port} (socks5+http, dial ${service.proxy!.dialMode}${via})\n`);
  if (tp.active && tp.enabled) {
    process.stdout.write(`braid: transparent mode: all apps' TCP goes through braid (listener ${tp.listen}); bypassed: ${tp.bypass.join(' ')}${tp.blockQuic ? '; UDP 443 (QUIC) is rejected so browsers use TCP; DNS is untouched' : ''}\n`);
  }
  if (control) {
    // The token is for the person at this terminal (like a notebook server's); it never goes to the log.
    process.stdout.write(`braid: control API on ${control.url} (dashboard: ${control.url}#token=${control.token})\n`);
  }
  return stopped;
}

export const up: Command = {
  summary: 'run the local SOCKS5 + HTTP proxy (and path management) until SIGINT/SIGTERM',
  details: [
    '--relay-file FILE    the relay link (braid://…) from FILE; --relay - reads it from standard input. --relay LINK',
    '                     works too but shows the link\'s secret to every local user (ps), so it warns.',
    '--control HOST:PORT  the control API (default 127.0.0.1:9797, moved to a free port if that one is taken);',
    '                     an address given here is used or braid up fails: it is never swapped for another.',
  ],
  usage:
    'braid up [--host H] [--port P] [--auth USER:PASS] [--dial mptcp|tcp] [--relay-file FILE | --relay -] [--paths on|off] [--control HOST:PORT|off] [--system-proxy] [--transparent] [--config FILE] [--state-dir DIR] [--verbose]',
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    auth: { type: 'string' },
    dial: { type: 'string' },
    relay: { type: 'string' },
    'relay-file': { type: 'string' },
    paths: { type: 'string' },
    control: { type: 'string' },
    'system-proxy': { type: 'boolean' },
    transparent: { type: 'boolean' },
    config: { type: 'string' },
    'state-dir': { type: 'string' },
    verbose: { type: 'boolean', short: 'v' },
    help: { type: 'boolean', short: 'h' },
  },
  run: runUp,
};

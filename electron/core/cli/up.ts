/** `braid up`: the proxy (and path management, and the relay client when configured) until a signal. */
import fs from 'node:fs';
import { defaultConfigFile, defaultStateDir } from '../config/locations';
import { loadConfig, watchConfigFile } from '../config/load';
import type { ConfigInput, DialMode } from '../config/schema';
import { errorMessage } from '../errors';
import { BraidService } from '../service';
import { startControl } from '../control/start';
import { parseRelayLink } from '../relay/share-link';
import { withSystemProxy } from '../sysproxy/cli';
import { parseHostPort, parsePort, stderrLogger, str, untilSignal, usageError, type Command, type Values } from './common';

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
  const relay = str(values, 'relay');
  if (relay !== undefined) {
    try {
      parseRelayLink(relay);
    } catch (err) {
      throw usageError(`--relay: ${errorMessage(err)}`);
    }
    overrides.relay = { link: relay };
  }
  const paths = str(values, 'paths');
  if (paths !== undefined && paths !== 'on' && paths !== 'off') throw usageError(`--paths must be 'on' or 'off', got '${paths}'`);
  if (paths !== undefined) overrides.paths = { enabled: paths === 'on' };
  const controlFlag = str(values, 'control');
  if (controlFlag === 'off') overrides.control = { enabled: false };
  else if (controlFlag !== undefined) {
    const { host: chost, port: cport } = parseHostPort(controlFlag, 'control');
    overrides.control = { enabled: true, host: chost, port: cport };
  }

  // An explicit --config must exist; the default file is used only when present.
  const explicit = str(values, 'config');
  const fallback = defaultConfigFile();
  const file = explicit ?? (fs.existsSync(fallback) ? fallback : undefined);
  const config = loadConfig({ file, overrides });
  const log = stderrLogger(values.verbose === true);
  const stateDir = str(values, 'state-dir') ?? defaultStateDir();

  const service = new BraidService({ config, configFile: file ?? null, stateDir, log });
  const addr = await service.start();
  service.proxy!.tracker.on('closed', (c) => {
    const dest = c.destination ? `${c.destination.host}:${c.destination.port}${c.destination.address ? ` (${c.destination.address})` : ''}` : '-';
    log.info(`connection ${c.id} closed: ${c.protocol ?? 'unknown'} ${c.client.address}:${c.client.port} -> ${dest} transport ${c.transport} up ${c.bytesUp} down ${c.bytesDown}`);
  });
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const via = config.relay.link ? `, via relay ${parseRelayLink(config.relay.link).host}` : '';
  process.stdout.write(`braid: proxy listening on ${shown}:${addr.port} (socks5+http, dial ${service.proxy!.dialMode}${via})\n`);
  service.paths?.on('mptcp', (e) => {
    if (e.type === 'overflow' || e.type === 'error' || e.type === 'unknown') return;
    const f = e as { saddr?: string; daddr?: string; sport?: number; dport?: number; token?: number; ifname?: string | null };
    const ends = f.saddr ? ` ${f.saddr}:${f.sport} -> ${f.daddr}:${f.dport}` : '';
    log.debug(`mptcp ${e.type} token ${f.token ?? '-'}${ends}${f.ifname ? ` dev ${f.ifname}` : ''}`);
  });

  // Only the overrides given on this command line stay fixed; the rest follows the file.
  const unwatch = file
    ? watchConfigFile(file, () => void service.adoptConfig(loadConfig({ file, overrides })).catch((e) => log.warn(errorMessage(e))), (err) => log.warn(`config file ${file}: ${errorMessage(err)} (keeping the previous config)`))
    : () => {};

  const control = config.control.enabled ? await startControl(service, { stateDir, log }) : null;
  if (control) {
    // The token is for the person at this terminal (like a notebook server's); it never goes to the log.
    process.stdout.write(`braid: control API on ${control.url} (dashboard: ${control.url}#token=${control.token})\n`);
  }

  const undoSystemProxy = values['system-proxy'] === true ? await withSystemProxy(addr, log) : null;
  return untilSignal(async () => {
    unwatch();
    await control?.close();
    await undoSystemProxy?.();
    await service.stop();
  }, log);
}

export const up: Command = {
  summary: 'run the local SOCKS5 + HTTP proxy (and path management) until SIGINT/SIGTERM',
  usage:
    'braid up [--host H] [--port P] [--auth USER:PASS] [--dial mptcp|tcp] [--relay braid://…] [--paths on|off] [--control HOST:PORT|off] [--system-proxy] [--config FILE] [--state-dir DIR] [--verbose]',
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    auth: { type: 'string' },
    dial: { type: 'string' },
    relay: { type: 'string' },
    paths: { type: 'string' },
    control: { type: 'string' },
    'system-proxy': { type: 'boolean' },
    config: { type: 'string' },
    'state-dir': { type: 'string' },
    verbose: { type: 'boolean', short: 'v' },
    help: { type: 'boolean', short: 'h' },
  },
  run: runUp,
};

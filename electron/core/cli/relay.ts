/** `braid relay`: the server end. Prints its share link once, then serves until a signal. */
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { defaultConfigFile } from '../config/locations';
import { errorCode, errorMessage } from '../errors';
import { loadNative } from '../proxy/native';
import { loadOrCreateCredentials } from '../relay/credentials';
import { DestinationPolicy } from '../relay/policy';
import { RELAY_DEFAULT_DIAL, RelayServer } from '../relay/server';
import { formatRelayLink } from '../relay/share-link';
import { list, parseHostPort, stderrLogger, str, untilSignal, usageError, type Command, type Values } from './common';
import { relaySecretFromFlags } from './secret-input';

function count(values: Values, name: string, dflt: number, max: number): number {
  const v = str(values, name);
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) throw usageError(`--${name} must be a whole number from 1 to ${max}, got '${v}'`);
  return Number(v);
}

/** The address clients should use when the relay listens on a wildcard: the first global one. */
function guessPublicHost(listenHost: string): string {
  if (listenHost !== '0.0.0.0' && listenHost !== '::') return listenHost;
  const all = Object.values(os.networkInterfaces()).flat().filter((a) => a && !a.internal);
  const v4 = all.find((a) => a!.family === 'IPv4');
  const v6 = all.find((a) => a!.family === 'IPv6' && !a!.address.startsWith('fe80'));
  return (listenHost === '::' ? v6 ?? v4 : v4)?.address ?? listenHost;
}

/** `--speed-test on|off` and `--speed-test-budget MB` (per client address and 10 minutes). */
function speedTestOption(values: Values): false | { budgetBytes: number } | undefined {
  const mode = str(values, 'speed-test') ?? 'on';
  if (mode !== 'on' && mode !== 'off') throw usageError(`--speed-test must be 'on' or 'off', got '${mode}'`);
  if (mode === 'off') return false;
  const budget = str(values, 'speed-test-budget');
  return budget === undefined ? undefined : { budgetBytes: count(values, 'speed-test-budget', 1024, 1_000_000) * 1024 * 1024 };
}

async function runRelay(values: Values): Promise<number> {
  const listen = parseHostPort(str(values, 'listen') ?? '[::]:8443', 'listen');
  if (net.isIP(listen.host) === 0) throw usageError(`--listen needs a numeric address, got '${listen.host}'`);
  const dial = str(values, 'dial') ?? RELAY_DEFAULT_DIAL;
  if (dial !== 'mptcp' && dial !== 'tcp') throw usageError(`--dial must be 'mptcp' or 'tcp', got '${dial}'`);
  const metricsText = str(values, 'metrics') ?? '127.0.0.1:9464';
  const metrics = metricsText === 'off' ? null : parseHostPort(metricsText, 'metrics');
  const cert = str(values, 'cert');
  const key = str(values, 'key');
  if ((cert === undefined) !== (key === undefined)) throw usageError('--cert and --key go together');
  let policy: DestinationPolicy;
  try {
    policy = new DestinationPolicy({ allow: list(values, 'allow'), deny: list(values, 'deny') });
  } catch (err) {
    throw usageError(`--allow/--deny: ${errorMessage(err)}`);
  }
  // Every flag is checked before anything is written: bad input must not leave credentials behind.
  const limits = {
    maxConnections: count(values, 'max-connections', 4096, 1_000_000),
    maxPerClient: count(values, 'max-per-client', 256, 1_000_000),
    handshakeMs: count(values, 'handshake-timeout', 10_000, 600_000),
    requestWaitMs: count(values, 'request-timeout', 60_000, 3_600_000),
    idleMs: count(values, 'idle-timeout', 300_000, 86_400_000),
    connectMs: count(values, 'connect-timeout', 10_000, 600_000),
    speedTest: speedTestOption(values),
  };
  const log = stderrLogger(values.verbose === true);
  const secret = relaySecretFromFlags(values, log);
  const dir = str(values, 'dir') ?? path.join(path.dirname(defaultConfigFile()), 'relay');
  const credentials = loadOrCreateCredentials({ dir, keyFile: key, certFile: cert, secret });
  if (credentials.created) log.warn(`created a new key, certificate and secret in ${dir}`);
  if (!loadNative().mod?.supported().mptcp) log.warn('MPTCP is not available here: the relay listens and dials plain TCP, so clients get no aggregation');

  const server = new RelayServer({ host: listen.host, port: listen.port, credentials, policy, dial, ...limits, metrics, log });
  const addr = await server.start();
  // Handled before the ready line: a SIGTERM right after it must still stop the relay cleanly.
  const stopped = untilSignal(() => server.stop(), log);
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  process.stdout.write(`braid: relay listening on ${shown}:${addr.port} (MPTCP + TLS 1.3)\n`);
  const m = server.metricsAddress();
  if (m) process.stdout.write(`braid: metrics on http://${m.family === 'IPv6' ? `[${m.address}]` : m.address}:${m.port}/metrics\n`);
  else if (metrics) {
    const where = net.isIPv6(metrics.host) ? `[${metrics.host}]:${metrics.port}` : `${metrics.host}:${metrics.port}`;
    const why = errorCode(server.metricsError) === 'EADDRINUSE' ? 'the address is in use (another relay on this host?)' : errorMessage(server.metricsError);
    log.warn(`metrics not served: cannot listen on ${where}: ${why}; the relay serves without them. Choose another address with --metrics HOST:PORT, or --metrics off`);
  }
  const host = str(values, 'public-host') ?? guessPublicHost(listen.host);
  // The link carries the secret: it goes to stdout once, for the operator to hand to clients, and
  // never into the log.
  process.stdout.write(`braid: share link: ${formatRelayLink({ host, port: addr.port, secret: credentials.secret, pin: credentials.pin, name: str(values, 'name') })}\n`);
  return stopped;
}

export const relay: Command = {
  summary: 'run a relay: clients reach it over MPTCP + TLS, it dials destinations for them',
  details: [
    '--secret-file FILE   the secret (16-128 of A-Z a-z 0-9 _ -) from FILE, or from BRAID_RELAY_SECRET; --secret S',
    '                     works too but shows the secret to every local user (ps), so it warns.',
    '--metrics HOST:PORT  Prometheus metrics (default 127.0.0.1:9464; off: none). When the address cannot be',
    '                     bound (a second relay on this host), the relay warns and serves without metrics.',
    '--speed-test on|off  the speed test of `braid doctor --speed`, through the same authenticated tunnel (nothing',
    '                     without the secret), capped at 10 s and 256 MiB per test, 2 tests at once and 1024 MiB',
    '                     per 10 minutes per client address, and 8 tests at once in all (default on).',
    '--speed-test-budget MB  the per-client budget per 10 minutes (default 1024).',
  ],
  usage:
    'braid relay [--listen HOST:PORT] [--public-host HOST] [--allow CIDR]... [--deny CIDR]... [--dir DIR] [--cert FILE --key FILE] [--secret-file FILE] [--metrics HOST:PORT|off] [--max-connections N] [--max-per-client N] [--handshake-timeout MS] [--request-timeout MS] [--idle-timeout MS] [--connect-timeout MS] [--dial mptcp|tcp] [--name NAME] [--speed-test on|off] [--speed-test-budget MB] [--verbose]',
  options: {
    listen: { type: 'string' },
    'public-host': { type: 'string' },
    allow: { type: 'string', multiple: true },
    deny: { type: 'string', multiple: true },
    dir: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    secret: { type: 'string' },
    'secret-file': { type: 'string' },
    metrics: { type: 'string' },
    'max-connections': { type: 'string' },
    'max-per-client': { type: 'string' },
    'handshake-timeout': { type: 'string' },
    'request-timeout': { type: 'string' },
    'idle-timeout': { type: 'string' },
    'connect-timeout': { type: 'string' },
    dial: { type: 'string' },
    name: { type: 'string' },
    'speed-test': { type: 'string' },
    'speed-test-budget': { type: 'string' },
    verbose: { type: 'boolean', short: 'v' },
    help: { type: 'boolean', short: 'h' },
  },
  run: runRelay,
};

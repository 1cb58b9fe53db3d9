/**
 * One diagnosis, start to end: the kernel, each interface, each path to the relay (or a target),
 * captive portals, the live connections of a running Braid, and the speed test. The same function
 * runs inside `braid up` (the `doctor.run` command, for the CLI and the dashboard) and, without a
 * running Braid, inside `braid doctor` itself.
 */
import dns from 'node:dns';
import net from 'node:net';
import type { BraidConfig } from '../config/schema';
import type { ConnectionView, DoctorFinding, DoctorReport, DoctorRunParams, SpeedView } from '../contract';
import { BraidError, errorCode, errorMessage } from '../errors';
import * as netlink from '../native/netlink';
import type { PmEndpoint } from '../native/netlink';
import { snapshot, type InterfaceState } from '../paths/inventory';
import { loadNative } from '../proxy/native';
import { parseRelayLink, type RelayLink } from '../relay/share-link';
import { parseAuthority } from '../relay/wire';
import { Findings, reportOk } from './findings';
import { gatherCandidates, interfaceFindings, recordedBraidIds, routeFindings, type PathCandidate, type Target } from './interfaces';
import { blackholeFinding, counterDelta, kernelFindings, mptcpProbeBudgetMs, readKernel, readMptcpCounters } from './kernel';
import { liveFindings } from './live';
import { pathFindings } from './path-findings';
import { portalFinding, portalProbe } from './portal';
import { probePath, type PathProbe } from './probe';
import { measureSpeed } from './speed';
import { braidIsPathManager } from '../paths/pm-sysctl';
import { connectRaw, connectSpeedTarget, readLine, tlsToRelay } from './tunnel';

export interface DoctorContext {
  config: BraidConfig;
  stateDir: string | null;
  /** A running Braid's live state; null when `braid doctor` runs on its own. */
  running: {
    connections(): ConnectionView[];
    /** Braid manages endpoints here now, and what it says per interface. */
    managed: boolean;
    braidIds: Set<number>;
    notes: Map<string, string | null>;
  } | null;
}

export interface DoctorProgress {
  step: string;
  done: number;
  total: number;
  finding: DoctorFinding | null;
}

/** Without a relay or target, routes are looked up towards well-known public addresses: nothing is sent there. */
const NOWHERE: Target = { host: 'the internet', port: 443, addresses: ['1.1.1.1', '2606:4700:4700::1111'], label: 'the internet', isRelay: false };

export function parseTarget(text: string): { host: string; port: number } {
  const withPort = parseAuthority(text);
  if (withPort) return withPort;
  const host = text.replace(/^\[(.*)\]$/, '$1');
  if (net.isIP(host) || /^[A-Za-z0-9.-]{1,253}$/.test(host)) return { host, port: 443 };
  throw new BraidError('EUSAGE', `target must be HOST or HOST:PORT (IPv6 as [ADDR]:PORT), got '${text}'`);
}

async function resolveAll(host: string): Promise<string[]> {
  if (net.isIP(host)) return [host];
  const all = await dns.promises.lookup(host, { all: true, verbatim: true });
  return all.map((a) => a.address);
}

export async function runDoctor(ctx: DoctorContext, params: DoctorRunParams, onProgress: (p: DoctorProgress) => void): Promise<DoctorReport> {
  const startedAt = Date.now();
  // Bad input is refused before anything is probed.
  let link: RelayLink | null = null;
  const linkText = params.relay ?? ctx.config.relay.link;
  if (linkText) {
    try {
      link = parseRelayLink(linkText);
    } catch (err) {
      throw new BraidError('EUSAGE', errorMessage(err));
    }
  }
  let speedUrl: URL | null = null;
  if (params.speedUrl) {
    try {
      speedUrl = new URL(params.speedUrl);
    } catch {
      throw new BraidError('EUSAGE', `speed URL '${params.speedUrl}' is not a URL`);
    }
    if (speedUrl.protocol !== 'http:' && speedUrl.protocol !== 'https:') throw new BraidError('EUSAGE', 'the speed URL must be http:// or https://');
  }
  // Without a relay, routes and probes go to the target given, or to the host of the speed URL.
  const givenTarget = link ? null : params.target ? parseTarget(params.target) : speedUrl ? { host: speedUrl.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(speedUrl.port || (speedUrl.protocol === 'https:' ? 443 : 80)) } : null;
  const portalText = params.portalUrl ?? ctx.config.doctor.portalUrl;
  const portalUrl = portalText ? new URL(portalText) : null;
  // Long enough to average out the bursts in which an aggregated MPTCP transfer arrives.
  const seconds = params.seconds ?? 6;

  let done = 0;
  let total = 6;
  let step = 'starting';
  const progress = (s: string, finding: DoctorFinding | null = null, advance = true): void => {
    if (advance) done = Math.min(total, done + 1);
    step = s;
    onProgress({ step, done, total, finding });
  };
  const f = new Findings((finding) => progress(step, finding, false));

  progress('kernel', null, false);
  const kernel = readKernel();
  const countersBefore = readMptcpCounters();

  progress('interfaces');
  let interfaces: InterfaceState[] = [];
  let endpoints: PmEndpoint[] = [];
  try {
    interfaces = snapshot();
  } catch (err) {
    f.fail('iface.list', null, `Cannot list the network interfaces: ${errorMessage(err)}.`);
  }
  try {
    endpoints = netlink.listEndpoints();
  } catch (err) {
    f.warn('iface.endpoint', null, `Cannot read the MPTCP endpoints: ${errorMessage(err)}.`);
  }

  let target: Target | null = null;
  if (link) {
    progress(`resolving the relay ${link.host}`);
    try {
      const addresses = await resolveAll(link.host);
      target = { host: link.host, port: link.port, addresses, label: `the relay ${net.isIPv6(link.host) ? `[${link.host}]` : link.host}:${link.port}`, isRelay: true };
    } catch (err) {
      f.fail('relay.resolve', null, `The relay's name ${link.host} does not resolve (${errorCode(err)}).`, 'check the link, and DNS on this machine');
    }
  } else if (givenTarget) {
    progress(`resolving ${givenTarget.host}`);
    try {
      target = { ...givenTarget, addresses: await resolveAll(givenTarget.host), label: `${givenTarget.host}:${givenTarget.port}`, isRelay: false };
    } catch (err) {
      f.fail('target.resolve', null, `${givenTarget.host} does not resolve (${errorCode(err)}).`);
    }
  }
  if (!link) {
    f.warn('relay.configured', null, 'No relay: only destinations that speak MPTCP themselves (few do) can use more than one path; every other connection falls back to plain TCP on one path.',
      'run `braid relay` on a server, then `braid up --relay LINK` (or import the link in the dashboard); `braid doctor --relay LINK` checks the paths to it');
  }

  const running = ctx.running;
  const input = {
    interfaces, endpoints, paths: ctx.config.paths,
    braidIds: running?.braidIds ?? recordedBraidIds(ctx.stateDir),
    managed: running?.managed ?? false,
    braidIsPathManager: kernel.pathManager === 'userspace' && braidIsPathManager(ctx.stateDir),
    notes: running?.notes ?? new Map<string, string | null>(),
    target: target ?? NOWHERE,
  };
  const cands = gatherCandidates(input);
  const usable = cands.filter((c) => c.usable);
  total += usable.length * (target ? 1 : 0) + (portalUrl ? usable.length : 0) + (params.speed ? 2 * (usable.length + 1) : 0);

  kernelFindings({ readings: kernel, usablePaths: usable.length, braidManagesLimits: input.managed, braidIsPathManager: input.braidIsPathManager }, f);
  interfaceFindings(cands, input, f);
  routeFindings(cands, target ?? NOWHERE, f);

  let probes: PathProbe[] = [];
  if (target && loadNative().mod) {
    const budget = mptcpProbeBudgetMs(kernel.synRetrans);
    const joiners = (c: PathCandidate): string[] =>
      usable.filter((o) => o !== c && o.route !== false && o.endpoints.some((e) => e.flagNames.includes('subflow'))).map((o) => o.iface.name);
    probes = await Promise.all(usable.filter((c) => c.targetAddress).map(async (c) => {
      const p = await probePath(c, {
        link: target!.isRelay ? link : null, mptcp: kernel.socketOk, port: target!.port, mptcpBudgetMs: budget,
        expectJoins: kernel.limits?.subflows === 0 ? [] : joiners(c),
      });
      progress(`${c.iface.name}: probed`);
      return p;
    }));
  } else if (target) {
    f.warn('path.tcp', null, 'Paths were not probed: the native addon is not loaded (npm ci builds it).');
  }
  const countersAfter = readMptcpCounters();
  const disabled = counterDelta(countersBefore, countersAfter, 'MPCapableSYNTXDisabled') > 0;
  blackholeFinding(f, kernel, disabled, (countersAfter.Blackhole ?? 0) > 0);
  if (disabled) for (const p of probes) {
    // The kernel sent these handshakes without MPTCP at all: they say nothing about the paths.
    p.mptcp = { kind: 'skipped' };
    p.joinTested = false;
  }
  if (target) {
    pathFindings(cands, probes, target, f, {
      synTx: counterDelta(countersBefore, countersAfter, 'MPJoinSynTx'),
      synAckRx: counterDelta(countersBefore, countersAfter, 'MPJoinSynAckRx'),
    }, kernel.limits?.subflows ?? null);
  }

  const relayAddress = target?.isRelay ? target.addresses[0] : null;
  if (link && relayAddress && loadNative().mod) {
    progress('relay: secret');
    await relayAuthFinding(link, relayAddress, probes, f);
  }

  if (portalUrl) {
    await Promise.all(usable.filter((c) => c.address).map(async (c) => {
      portalFinding(c, portalUrl.href, await portalProbe(portalUrl, c), f);
      progress(`${c.iface.name}: captive portal`);
    }));
  }

  if (running) {
    progress('live connections');
    liveFindings({ connections: running.connections(), relayInUse: !!ctx.config.relay.link && (!params.relay || params.relay === ctx.config.relay.link), dial: ctx.config.proxy.dial, cands }, f);
  }

  let speed: SpeedView | null = null;
  if (params.speed) {
    const reachable = usable.filter((c) => probes.find((p) => p.name === c.iface.name)?.tcp.ok);
    if (!link && !speedUrl) {
      f.warn('speed.errors', null, 'The speed test needs a relay (its speed-test endpoint) or a URL to download (--speed-url).', 'braid doctor --speed --relay LINK, or --speed-url URL');
    } else if (link && (!relayAddress || f.list.some((x) => x.check === 'relay.auth' && x.status === 'fail'))) {
      f.warn('speed.errors', null, 'The speed test was skipped: the relay cannot be used (see above).');
    } else {
      speed = await measureSpeed({
        cands: link ? reachable : usable.filter((c) => c.address), link, relayAddress, url: link ? null : speedUrl, seconds,
        progress: (s) => progress(s),
      }, f);
    }
  }
  done = total;
  progress('done', null, false);
  return { ok: reportOk(f.list), findings: f.list, speed, startedAt, finishedAt: Date.now() };
}

/**
 * The secret, checked once over the default route: a CONNECT to the relay's speed-test target,
 * which answers INFO with its limits. Sent only to a relay whose certificate matched the pin.
 */
async function relayAuthFinding(link: RelayLink, address: string, probes: PathProbe[], f: Findings): Promise<void> {
  if (probes.length > 0 && probes.every((p) => p.tls && p.tls.ok && !p.tls.pinOk)) {
    f.fail('relay.auth', null, 'The secret was not sent: no path reached a server with the relay\'s certificate (see the TLS findings).');
    return;
  }
  let socket: net.Socket | null = null;
  try {
    const raw = await connectRaw(address, link.port, { mptcp: true, timeoutMs: 5000 });
    socket = raw.socket;
    const t = await tlsToRelay(raw.socket, link, 5000);
    socket = t.socket;
    if (!t.pinOk) {
      f.fail('relay.auth', null, 'The secret was not sent: the server that answered has not the relay\'s certificate.', 'get a fresh share link from the relay');
      return;
    }
    const a = await connectSpeedTarget(t.socket, link, 5000);
    if (a.status === 407) {
      f.fail('relay.auth', null, 'The relay refused the link\'s secret (407): the link is outdated or for another relay, so it serves nothing.', 'get a fresh share link from the relay (braid relay prints it at start)');
      return;
    }
    if (a.status !== 200) {
      const off = a.code === 'ESPEEDOFF' ? 'its speed test is turned off' : a.code === 'ESPEEDLIMIT' ? `its speed test is busy or this machine's budget is used up (${a.message})` : `it has no speed test (an older version: ${a.status} ${a.code ?? ''})`;
      f.ok('relay.auth', null, `The relay accepted the secret; ${off}.`);
      return;
    }
    t.socket.write('INFO\n');
    const line = await readLine(t.socket, a.rest, 5000);
    const info = line && line.line.startsWith('INFO ') ? (JSON.parse(line.line.slice(5)) as { maxSeconds?: number; remainingBytes?: number }) : null;
    f.ok('relay.auth', null, `The relay accepted the secret${info ? `; its speed test allows ${info.maxSeconds} s per test and ${Math.round((info.remainingBytes ?? 0) / 1048576)} MiB more from this address` : ''}.`);
  } catch (err) {
    f.fail('relay.auth', null, `Could not check the secret with the relay: ${errorMessage(err)}.`);
  } finally {
    socket?.destroy();
  }
}

/**
 * Network-namespace topologies for multipath tests and benchmarks.
 *
 * Everything lives inside namespaces created here: veth pairs are created directly inside their
 * namespaces (`ip link add ... netns`), so the root namespace's interfaces, routes and MPTCP
 * endpoints are never touched. Deleting a namespace removes its veth ends, so `destroy()` only has
 * to stop the processes started inside and delete the namespaces; the same cleanup also runs on
 * process exit and on SIGINT/SIGTERM, because a leaked namespace outlives the test run.
 */
import { execFile, execFileSync, spawn as spawnChild, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import crypto from 'node:crypto';

const IP = 'ip';
const EXEC_TIMEOUT_MS = 15_000;

export interface ExecResult {
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  timeoutMs?: number;
  /** do not throw on a non-zero exit; the caller inspects `code` */
  allowFailure?: boolean;
}

export interface ExecOutcome extends ExecResult {
  code: number | null;
}

/**
 * An IPv6 address in the form the kernel and `ip` print (RFC 5952: no leading zeros in a group, the
 * longest run of zero groups as ::). Addresses made from random hex (fd12:0abc:…) are compared as
 * text with what the kernel reports, and would differ in 1 run in 16 otherwise.
 */
export function canonicalIPv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/** Runs a command to completion with a hard time limit; throws with stderr on failure. */
export function run(argv: string[], opts: ExecOptions = {}): Promise<ExecOutcome> {
  const timeout = opts.timeoutMs ?? EXEC_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = execFile(argv[0]!, argv.slice(1), { timeout, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        runningCommands.delete(child);
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
        if (err && !opts.allowFailure) {
          const why = (err as { killed?: boolean }).killed ? `timed out after ${timeout} ms` : `exit ${code}`;
          reject(Object.assign(new Error(`${argv.join(' ')}: ${why}: ${String(stderr).trim()}`), { code: 'EEXEC', stderr }));
          return;
        }
        resolve({ stdout: String(stdout), stderr: String(stderr), code });
      });
    runningCommands.add(child);
  });
}

/** Commands still running (a download inside a namespace keeps that namespace alive after deletion). */
const runningCommands = new Set<ChildProcess>();

/**
 * A process running inside a namespace, with its stdout split into lines so that a test can wait
 * for "listening" or pick out a JSON report that was printed before it started looking.
 */
export class NsProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  private readonly waiters = new Set<() => void>();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(child: ChildProcess, readonly label: string) {
    this.child = child;
    let partial = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      partial += chunk;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        this.lines.push(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
      }
      this.wake();
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      // Keep only the tail: a chatty process must not grow the test's memory without bound.
      this.stderr = (this.stderr + chunk).slice(-64 * 1024);
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        if (partial) { this.lines.push(partial); partial = ''; }
        this.exitInfo = { code, signal };
        this.wake();
        resolve(this.exitInfo);
      });
      child.on('error', (err) => {
        this.stderr += `\nspawn error: ${err.message}`;
        this.exitInfo = { code: null, signal: null };
        this.wake();
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number | undefined { return this.child.pid; }
  get running(): boolean { return this.exitInfo === null; }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /**
   * Resolves with the first line (from `fromIndex` on) that matches; rejects on timeout or when the
   * process exits first, quoting its stderr, because "timed out" alone says nothing about why.
   */
  waitForLine(match: RegExp | ((line: string) => boolean), timeoutMs: number, fromIndex = 0): Promise<{ line: string; index: number }> {
    const test = typeof match === 'function' ? match : (l: string) => match.test(l);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): boolean => {
        for (let i = fromIndex; i < this.lines.length; i++) {
          if (test(this.lines[i]!)) { done(); resolve({ line: this.lines[i]!, index: i }); return true; }
        }
        if (this.exitInfo) {
          done();
          reject(new Error(`${this.label} exited (code ${this.exitInfo.code}, signal ${this.exitInfo.signal}) before printing ${String(match)}; stderr: ${this.stderr.trim().slice(-2000)}; stdout: ${this.lines.slice(-20).join('\n')}`));
          return true;
        }
        return false;
      };
      const done = (): void => { if (timer) clearTimeout(timer); this.waiters.delete(waiter); };
      const waiter = (): void => { check(); };
      if (check()) return;
      this.waiters.add(waiter);
      timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: no line matching ${String(match)} within ${timeoutMs} ms; stderr: ${this.stderr.trim().slice(-2000)}; stdout: ${this.lines.slice(-20).join('\n')}`));
      }, timeoutMs);
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (!this.running || this.child.pid === undefined) return;
    try { this.child.kill('SIGTERM'); } catch { /* already gone */ }
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
    if ((await Promise.race([this.exited, timer])) === 'timeout') {
      try { this.child.kill('SIGKILL'); } catch { /* already gone */ }
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, graceMs).unref())]);
    }
  }

  killSync(): void {
    if (this.running) { try { this.child.kill('SIGKILL'); } catch { /* already gone */ } }
  }
}

export interface StaticRoute {
  family: 4 | 6;
  prefix: string;
  via?: string;
  dev: string;
  metric?: number;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  label?: string;
}

export class Namespace {
  private destroyed = false;
  private readonly processes = new Set<NsProcess>();
  private readonly routes: StaticRoute[] = [];

  private constructor(readonly name: string) {}

  static async create(name: string): Promise<Namespace> {
    await run([IP, 'netns', 'add', name]);
    const ns = new Namespace(name);
    registerForCleanup(ns);
    try {
      await ns.exec([IP, 'link', 'set', 'lo', 'up']);
      // A second subflow from the link-2 address toward the server's link-1 address returns on
      // link 2, which strict reverse-path filtering would drop.
      await ns.exec(['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
      // A link set down and up again must come back with its IPv6 addresses, as IPv4 does.
      await ns.exec(['sysctl', '-qw', 'net.ipv6.conf.all.keep_addr_on_down=1', 'net.ipv6.conf.default.keep_addr_on_down=1']);
    } catch (err) {
      ns.destroySync();
      throw err;
    }
    return ns;
  }

  /** `ip netns exec NAME argv...` to completion. */
  exec(argv: string[], opts: ExecOptions = {}): Promise<ExecOutcome> {
    return run([IP, 'netns', 'exec', this.name, ...argv], opts);
  }

  /**
   * Starts a long-running process inside the namespace. `ip netns exec` execs the command in
   * place (no fork), so the returned pid is the command's own pid, usable for /proc/<pid>/stat.
   */
  spawn(argv: string[], opts: SpawnOptions = {}): NsProcess {
    if (this.destroyed) throw new Error(`namespace ${this.name} is already destroyed`);
    const child = spawnChild(IP, ['netns', 'exec', this.name, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    const proc = new NsProcess(child, opts.label ?? `${argv.slice(0, 3).join(' ')} in ${this.name}`);
    this.processes.add(proc);
    void proc.exited.then(() => this.processes.delete(proc));
    return proc;
  }

  /**
   * A static route that survives its device going down and up: the kernel flushes routes through a
   * device that goes down and only restores the connected ones, so Link.setUp() replays these.
   */
  async addRoute(route: StaticRoute): Promise<void> {
    this.routes.push(route);
    await this.applyRoute(route);
  }

  async restoreRoutes(dev: string): Promise<void> {
    for (const r of this.routes) if (r.dev === dev) await this.applyRoute(r);
  }

  private async applyRoute(r: StaticRoute): Promise<void> {
    const argv = [IP, ...(r.family === 6 ? ['-6'] : []), 'route', 'replace', r.prefix];
    if (r.via) argv.push('via', r.via);
    argv.push('dev', r.dev);
    if (r.metric !== undefined) argv.push('metric', String(r.metric));
    await this.exec(argv);
  }

  async setMptcpLimits(subflows: number, addAddrAccepted: number): Promise<void> {
    await this.exec([IP, 'mptcp', 'limits', 'set', 'subflows', String(subflows), 'add_addr_accepted', String(addAddrAccepted)]);
  }

  async addMptcpEndpoint(address: string, opts: { dev?: string; flags?: Array<'subflow' | 'signal' | 'backup' | 'fullmesh'> } = {}): Promise<void> {
    const argv = [IP, 'mptcp', 'endpoint', 'add', address];
    if (opts.dev) argv.push('dev', opts.dev);
    argv.push(...(opts.flags ?? ['subflow']));
    await this.exec(argv);
  }

  /**
   * The namespace's MPTcpExt MIB counters (/proc/net/netstat is per network namespace), e.g.
   * MPCapableSYNTX, MPCapableFallbackSYNACK, MPJoinSynAckRx: kernel-side evidence of what the
   * sockets in this namespace actually negotiated, independent of our addon.
   */
  async mptcpCounters(): Promise<Record<string, number>> {
    const { stdout } = await this.exec(['cat', '/proc/net/netstat']);
    const lines = stdout.split('\n').filter((l) => l.startsWith('MPTcpExt:'));
    const out: Record<string, number> = {};
    if (lines.length < 2) return out;
    const names = lines[0]!.split(/\s+/).slice(1);
    const values = lines[1]!.split(/\s+/).slice(1);
    names.forEach((n, i) => { out[n] = Number(values[i] ?? 0); });
    return out;
  }

  async stopProcesses(): Promise<void> {
    await Promise.all([...this.processes].map((p) => p.stop()));
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    await this.stopProcesses();
    this.destroySync();
  }

  /** Synchronous so that it can run from a process 'exit' handler. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const p of this.processes) p.killSync();
    try {
      execFileSync(IP, ['netns', 'del', this.name], { stdio: 'ignore', timeout: EXEC_TIMEOUT_MS });
    } catch {
      // Already gone (or never fully created); nothing else to undo.
    }
    unregisterForCleanup(this);
  }
}

export interface LinkEnd {
  ns: Namespace;
  dev: string;
  ipv4: string;   // without prefix length
  ipv6: string;
}

export interface LinkOptions {
  /** tbf rate on both ends; null or undefined = unshaped */
  rateMbit?: number | null;
}

/** The tbf qdisc every shaped link in the tests and the bench gets: `tc qdisc add|replace … root` + this. */
export function tbf(rateMbit: number): string[] {
  return ['tbf', 'rate', `${rateMbit}mbit`, 'burst', '32kbit', 'latency', '100ms'];
}

export class Link {
  constructor(
    readonly index: number,
    readonly a: LinkEnd,
    readonly b: LinkEnd,
    readonly subnet4: string,
    readonly subnet6: string,
    readonly rateMbit: number | null,
  ) {}

  /** Both ends: the link behaves like an unplugged cable, not like one side losing its address. */
  async setDown(): Promise<void> {
    await Promise.all([this.a, this.b].map((e) => e.ns.exec([IP, 'link', 'set', 'dev', e.dev, 'down'])));
  }

  async setUp(): Promise<void> {
    await Promise.all([this.a, this.b].map((e) => e.ns.exec([IP, 'link', 'set', 'dev', e.dev, 'up'])));
    for (const e of [this.a, this.b]) await e.ns.restoreRoutes(e.dev);
  }

  /** The end of this link that lives in `ns`. */
  endIn(ns: Namespace): LinkEnd {
    if (this.a.ns === ns) return this.a;
    if (this.b.ns === ns) return this.b;
    throw new Error(`link ${this.index} does not touch namespace ${ns.name}`);
  }
}

let topologyCounter = 0;

/**
 * A set of namespaces and the links between them. Links are numbered from 1 in creation order; link
 * i uses 10.X.i.0/24 and fdXX:XXXX:XXXX:i::/64 where X is chosen per topology, so that the numbering
 * in logs says which link a subflow went over. The namespaces are isolated anyway; distinct subnets
 * only keep concurrent runs' logs and captures unambiguous.
 */
export class Topology {
  readonly namespaces: Namespace[] = [];
  readonly links: Link[] = [];
  readonly runId: string;
  private readonly octet: number;
  private readonly ula: string;
  private destroyed = false;

  constructor() {
    topologyCounter++;
    this.runId = `${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
    this.octet = ((process.pid * 7 + topologyCounter * 13) % 200) + 20;
    const r = crypto.randomBytes(4).toString('hex');
    this.ula = `fd${r.slice(0, 2)}:${r.slice(2, 6)}:${(process.pid & 0xffff).toString(16)}`;
  }

  /** A new namespace named braid-<pid>-<random>-<role>. */
  async addNamespace(role: string): Promise<Namespace> {
    if (this.destroyed) throw new Error('topology already destroyed');
    const ns = await Namespace.create(`braid-${this.runId}-${role}`);
    this.namespaces.push(ns);
    return ns;
  }

  /** A veth pair between two namespaces, addressed, up, and shaped with tbf on both ends when asked. */
  async link(nsA: Namespace, nsB: Namespace, opts: LinkOptions = {}): Promise<Link> {
    const index = this.links.length + 1;
    if (index > 250) throw new Error('too many links');
    const dev = `link${index}`;
    const subnet4 = `10.${this.octet}.${index}.0/24`;
    const subnet6 = `${this.ula}:${index.toString(16)}::/64`;
    const a: LinkEnd = { ns: nsA, dev, ipv4: `10.${this.octet}.${index}.1`, ipv6: canonicalIPv6(`${this.ula}:${index.toString(16)}::1`) };
    const b: LinkEnd = { ns: nsB, dev, ipv4: `10.${this.octet}.${index}.2`, ipv6: canonicalIPv6(`${this.ula}:${index.toString(16)}::2`) };
    // Created directly in the target namespaces: the pair never appears in the root namespace.
    await run([IP, 'link', 'add', 'name', dev, 'netns', nsA.name, 'type', 'veth', 'peer', 'name', dev, 'netns', nsB.name]);
    const rate = opts.rateMbit ?? null;
    const link = new Link(index, a, b, subnet4, subnet6, rate);
    this.links.push(link);
    for (const end of [a, b]) {
      await end.ns.exec([IP, 'addr', 'add', `${end.ipv4}/24`, 'dev', dev]);
      // nodad: duplicate address detection would leave the address tentative (unusable) for ~1 s.
      await end.ns.exec([IP, '-6', 'addr', 'add', `${end.ipv6}/64`, 'dev', dev, 'nodad']);
      await end.ns.exec([IP, 'link', 'set', 'dev', dev, 'up']);
      if (rate !== null) {
        await end.ns.exec(['tc', 'qdisc', 'add', 'dev', dev, 'root', ...tbf(rate)]);
      }
    }
    return link;
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all(this.namespaces.map((ns) => ns.stopProcesses()));
    for (const ns of this.namespaces) ns.destroySync();
  }
}

export interface TwoLinkOptions {
  /** per-link tbf rate on both ends of both links; null = unshaped (default 20) */
  rateMbit?: number | null;
  /** `ip mptcp limits` in both namespaces (default 8 / 8) */
  subflowLimit?: number;
  addAddrAccepted?: number;
  /** add the client's link-2 IPv6 address as a subflow endpoint as well (default true) */
  ipv6Endpoint?: boolean;
}

export type Side = 'client' | 'server' | Namespace;

export interface TwoLinkTopology {
  topology: Topology;
  client: Namespace;
  server: Namespace;
  links: [Link, Link];
  names: { client: string; server: string };
  /** addresses by link number (1 or 2) */
  clientAddress(link: 1 | 2, family?: 4 | 6): string;
  serverAddress(link: 1 | 2, family?: 4 | 6): string;
  exec(ns: Side, argv: string[], opts?: ExecOptions): Promise<ExecOutcome>;
  spawn(ns: Side, argv: string[], opts?: SpawnOptions): NsProcess;
  setLinkDown(n: 1 | 2): Promise<void>;
  setLinkUp(n: 1 | 2): Promise<void>;
  /** which link (1 or 2) an address on either side belongs to, or null */
  linkOf(address: string): 1 | 2 | null;
  destroy(): Promise<void>;
}

/**
 * Client and server namespaces joined by two veth links. The client announces nothing; its link-2
 * address is an MPTCP `subflow` endpoint bound to link 2, so every MPTCP connection the client opens
 * toward the server's link-1 address gets a second subflow over link 2 — the same arrangement a host
 * with WiFi plus cellular has.
 */
export async function createTwoLinkTopology(opts: TwoLinkOptions = {}): Promise<TwoLinkTopology> {
  const topology = new Topology();
  try {
    const client = await topology.addNamespace('c');
    const server = await topology.addNamespace('s');
    const rateMbit = opts.rateMbit === undefined ? 20 : opts.rateMbit;
    const l1 = await topology.link(client, server, { rateMbit });
    const l2 = await topology.link(client, server, { rateMbit });
    for (const ns of [client, server]) await ns.setMptcpLimits(opts.subflowLimit ?? 8, opts.addAddrAccepted ?? 8);
    // The server is reachable over link 2 too, as a host with two uplinks reaches the internet over
    // either: a less preferred route, so that unbound traffic keeps using link 1 while the subflow
    // bound to link 2 finds a route. Via the server's link-2 address: IPv6 neighbour discovery only
    // answers for addresses on the receiving interface, so an on-link route would never resolve.
    await client.addRoute({ family: 4, prefix: l1.subnet4, via: l2.b.ipv4, dev: l2.a.dev, metric: 100 });
    await client.addRoute({ family: 6, prefix: l1.subnet6, via: l2.b.ipv6, dev: l2.a.dev, metric: 1024 });
    await client.addMptcpEndpoint(l2.a.ipv4, { dev: l2.a.dev, flags: ['subflow'] });
    if (opts.ipv6Endpoint ?? true) await client.addMptcpEndpoint(l2.a.ipv6, { dev: l2.a.dev, flags: ['subflow'] });
    const resolve = (s: Side): Namespace => (s === 'client' ? client : s === 'server' ? server : s);
    const links: [Link, Link] = [l1, l2];
    const norm = (a: string): string => a.replace(/^::ffff:/i, '').toLowerCase();
    return {
      topology,
      client,
      server,
      links,
      names: { client: client.name, server: server.name },
      clientAddress: (n, family = 4) => (family === 4 ? links[n - 1]!.a.ipv4 : links[n - 1]!.a.ipv6),
      serverAddress: (n, family = 4) => (family === 4 ? links[n - 1]!.b.ipv4 : links[n - 1]!.b.ipv6),
      exec: (ns, argv, o) => resolve(ns).exec(argv, o),
      spawn: (ns, argv, o) => resolve(ns).spawn(argv, o),
      setLinkDown: (n) => links[n - 1]!.setDown(),
      setLinkUp: (n) => links[n - 1]!.setUp(),
      linkOf: (address) => {
        const a = norm(address);
        for (const l of links) {
          if ([l.a.ipv4, l.b.ipv4, l.a.ipv6, l.b.ipv6].some((x) => x.toLowerCase() === a)) return l.index as 1 | 2;
        }
        return null;
      },
      destroy: () => topology.destroy(),
    };
  } catch (err) {
    await topology.destroy();
    throw err;
  }
}

// ---- cleanup on exit -------------------------------------------------------------------------

const live = new Set<Namespace>();
let handlersInstalled = false;

function cleanupAllSync(): void {
  for (const c of runningCommands) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  for (const ns of [...live]) ns.destroySync();
}

function registerForCleanup(ns: Namespace): void {
  live.add(ns);
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupAllSync();
      // Re-raise with the default disposition so the exit status still says "killed by signal".
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

function unregisterForCleanup(ns: Namespace): void {
  live.delete(ns);
}

// ---- skip conditions -------------------------------------------------------------------------

function onPath(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    try { fs.accessSync(`${dir}/${cmd}`, fs.constants.X_OK); return true; } catch { /* next */ }
  }
  return false;
}

/**
 * Why namespace tests cannot run here, or undefined when they can; meant for `test(name, { skip })`
 * so that the skip reason in the report names the missing piece.
 */
export function skipUnlessRoot(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root (CAP_NET_ADMIN/CAP_SYS_ADMIN) to create network namespaces';
  for (const cmd of ['ip', 'tc']) if (!onPath(cmd)) return `needs the '${cmd}' command (iproute2)`;
  let enabled = '';
  try { enabled = fs.readFileSync('/proc/sys/net/mptcp/enabled', 'utf8').trim(); } catch { return 'kernel has no MPTCP (/proc/sys/net/mptcp/enabled missing)'; }
  if (enabled !== '1') return `MPTCP is disabled (net.mptcp.enabled = ${enabled})`;
  return undefined;
}

// Path management over netlink against the real kernel, inside throwaway network namespaces:
// MPTCP endpoints and limits checked against iproute2 in both directions, CAP_NET_ADMIN errors,
// MPTCP events from real connections (loopback and two veth links), rtnetlink link/address/route
// events, and watch handles that do not hold the process. The code under test runs in the
// namespaces through test/helpers/netlink-agent.ts; the root namespace is never touched.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import readline from 'node:readline';
import { Namespace, run, skipUnlessRoot } from './helpers/netns';
import { capabilityDropper } from './helpers/paths-harness';
import { ENDPOINT_FLAGS, flagBits, flagNames, type LinkEvent, type PmEndpoint, type PmEvent, type PmEventFields, type PmLimits } from '../electron/core/native/netlink';
import { requireFor, skipOrFail } from './helpers/prerequisites';

const AGENT = path.join(__dirname, 'helpers', 'netlink-agent.js');
const STEP_MS = 5_000;     // one request to the agent
const EVENT_MS = 3_000;    // an MPTCP event after the action that causes it
const LINK_EVENT_MS = 1_000;

const skip = requireFor('netlink path management, MPTCP events, link watch and watch lifetimes in namespaces (netlink.test.ts)', skipUnlessRoot());
type Ev = PmEventFields & { type: PmEvent['type'] };
const runTag = `${process.pid}-${crypto.randomBytes(3).toString('hex')}`;

interface Reply { id?: number; ok: boolean; value?: unknown; code?: string; message?: string }
interface EventLine<T> { event: 'pm' | 'link'; data: T; previousMicrotaskRan?: boolean }

/** The helper agent running in one namespace, driven over stdin/stdout JSON lines. */
class Agent {
  private readonly child: ChildProcess;
  private readonly lines: Array<Record<string, unknown>> = [];
  private readonly waiters = new Set<() => void>();
  private nextId = 1;
  private exited = false;
  private stderr = '';

  constructor(readonly ns: Namespace) {
    this.child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, AGENT], { stdio: ['pipe', 'pipe', 'pipe'] });
    readline.createInterface({ input: this.child.stdout! }).on('line', (l) => {
      try { this.lines.push(JSON.parse(l) as Record<string, unknown>); } catch { this.lines.push({ garbage: l }); }
      for (const w of [...this.waiters]) w();
    });
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-8000); });
    this.child.on('exit', () => { this.exited = true; for (const w of [...this.waiters]) w(); });
  }

  /** The first line from `from` on that matches, within `ms`. */
  waitLine(match: (l: Record<string, unknown>) => boolean, ms: number, from = 0, what = 'line'): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (let i = from; i < this.lines.length; i++) if (match(this.lines[i]!)) { done(); resolve(this.lines[i]!); return true; }
        if (this.exited) { done(); reject(new Error(`agent in ${this.ns.name} exited before ${what}; stderr: ${this.stderr}`)); return true; }
        return false;
      };
      const timer = setTimeout(() => { done(); reject(new Error(`no ${what} within ${ms} ms in ${this.ns.name}; stderr: ${this.stderr}`)); }, ms);
      const done = (): void => { clearTimeout(timer); this.waiters.delete(check); };
      if (!check()) this.waiters.add(check);
    });
  }

  ready(): Promise<unknown> { return this.waitLine((l) => l.ready === true, STEP_MS, 0, 'ready'); }

  get mark(): number { return this.lines.length; }

  async request(op: string, fields: Record<string, unknown> = {}): Promise<Reply> {
    const id = this.nextId++;
    this.child.stdin!.write(JSON.stringify({ id, op, ...fields }) + '\n');
    return (await this.waitLine((l) => l.id === id, STEP_MS, 0, `answer to ${op}`)) as unknown as Reply;
  }

  /** A netlink.ts function; throws (with the error's code) when it did. */
  async call<T>(fn: string, ...args: unknown[]): Promise<T> {
    const r = await this.request('call', { fn, args });
    if (!r.ok) throw Object.assign(new Error(`${fn}: ${r.message}`), { code: r.code });
    return r.value as T;
  }

  async callError(fn: string, ...args: unknown[]): Promise<{ code: string; message: string }> {
    const r = await this.request('call', { fn, args });
    assert.equal(r.ok, false, `${fn}(${JSON.stringify(args)}) should have failed`);
    return { code: r.code!, message: r.message! };
  }

  async op<T>(op: string, fields: Record<string, unknown> = {}): Promise<T> {
    const r = await this.request(op, fields);
    if (!r.ok) throw Object.assign(new Error(`${op}: ${r.message}`), { code: r.code });
    return r.value as T;
  }

  async event<T>(kind: 'pm' | 'link', match: (e: T) => boolean, from: number, what: string, ms = EVENT_MS): Promise<EventLine<T>> {
    return (await this.waitLine((l) => l.event === kind && match(l.data as T), ms, from, what)) as unknown as EventLine<T>;
  }

  events<T>(kind: 'pm' | 'link', from = 0): T[] {
    return this.lines.slice(from).filter((l) => l.event === kind).map((l) => l.data as T);
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.stdin!.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await new Promise<void>((r) => { if (this.exited) r(); else this.child.once('exit', () => r()); });
    clearTimeout(t);
  }
}

const namespaces: Namespace[] = [];
const agents: Agent[] = [];

async function newNamespace(role: string): Promise<Namespace> {
  const ns = await Namespace.create(`braid-nl-${runTag}-${role}`);
  namespaces.push(ns);
  return ns;
}

function newAgent(ns: Namespace): Agent {
  const a = new Agent(ns);
  agents.push(a);
  return a;
}

async function ip(ns: Namespace, ...argv: string[]): Promise<string> {
  return (await run(['ip', '-n', ns.name, ...argv])).stdout;
}

interface IpEndpoint { address: string; id: number; dev?: string; port?: number; signal?: boolean; subflow?: boolean; backup?: boolean; fullmesh?: boolean; implicit?: boolean }
async function ipEndpoints(ns: Namespace): Promise<IpEndpoint[]> {
  const text = (await ip(ns, '-j', 'mptcp', 'endpoint', 'show')).trim();
  return text ? (JSON.parse(text) as IpEndpoint[]) : [];
}

async function ipLimits(ns: Namespace): Promise<PmLimits> {
  const text = await ip(ns, 'mptcp', 'limits', 'show');
  const num = (k: string): number => Number(new RegExp(`${k} (\\d+)`).exec(text)?.[1] ?? NaN);
  return { subflows: num('subflows'), addAddrAccepted: num('add_addr_accepted') };
}

const ipFlagNames = (e: IpEndpoint): string[] => (['signal', 'subflow', 'backup', 'fullmesh', 'implicit'] as const).filter((f) => e[f]);

async function cleanup(): Promise<void> {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
  for (const ns of namespaces.splice(0)) await ns.destroy();
}

describe('netlink path management', { skip }, () => {
  let ns: Namespace;
  let agent: Agent;

  before(async () => {
    try {
      ns = await newNamespace('pm');
      await run(['ip', 'link', 'add', 'nl0', 'netns', ns.name, 'type', 'veth', 'peer', 'name', 'nl1', 'netns', ns.name]);
      await ip(ns, 'addr', 'add', '10.77.0.1/24', 'dev', 'nl0');
      // a 'signal' endpoint with a port listens on it, so the address must exist
      await ip(ns, '-6', 'addr', 'add', 'fd77::1/64', 'dev', 'nl0', 'nodad');
      await ip(ns, 'link', 'set', 'nl0', 'up');
      agent = newAgent(ns);
      await agent.ready();
    } catch (err) {
      await cleanup();
      throw err;
    }
  });
  after(cleanup);

  test('flag names and bits map both ways', () => {
    assert.equal(flagBits(['subflow', 'backup']), ENDPOINT_FLAGS.subflow | ENDPOINT_FLAGS.backup);
    assert.deepEqual(flagNames(ENDPOINT_FLAGS.signal | ENDPOINT_FLAGS.fullmesh), ['signal', 'fullmesh']);
    assert.throws(() => flagBits(['subflow', 'turbo' as never]), /unknown endpoint flag 'turbo'/);
    assert.throws(() => flagBits(-1), /32-bit/);
  });

  test('endpoints we add show in ip mptcp endpoint, with the id we return', async () => {
    const id4 = await agent.call<number>('addEndpoint', { address: '10.77.0.1', device: 'nl0', flags: ['subflow', 'backup'] });
    const id6 = await agent.call<number>('addEndpoint', { address: 'fd77:0:0::0001', id: 77, flags: ['signal'], port: 7777 });
    assert.equal(id6, 77);
    const shown = await ipEndpoints(ns);
    const e4 = shown.find((e) => e.address === '10.77.0.1');
    assert.ok(e4, `10.77.0.1 missing from ${JSON.stringify(shown)}`);
    assert.equal(e4.id, id4);
    assert.equal(e4.dev, 'nl0');
    assert.deepEqual(ipFlagNames(e4), ['subflow', 'backup']);
    const e6 = shown.find((e) => e.address === 'fd77::1');
    assert.ok(e6, `fd77::1 missing from ${JSON.stringify(shown)}`);
    assert.equal(e6.id, 77);
    assert.equal(e6.port, 7777);
    assert.deepEqual(ipFlagNames(e6), ['signal']);

    const listed = await agent.call<PmEndpoint[]>('listEndpoints');
    const l4 = listed.find((e) => e.id === id4)!;
    assert.deepEqual({ ...l4, ifindex: undefined }, {
      id: id4, family: 4, address: '10.77.0.1', port: 0, flags: ENDPOINT_FLAGS.subflow | ENDPOINT_FLAGS.backup,
      flagNames: ['subflow', 'backup'], ifindex: undefined, ifname: 'nl0',
    });
    assert.ok(l4.ifindex > 1);

    const dup = await agent.callError('addEndpoint', { address: '10.77.0.1', flags: ['subflow'] });
    assert.match(dup.code, /^E[A-Z]+$/);
    assert.equal((await ipEndpoints(ns)).filter((e) => e.address === '10.77.0.1').length, 1);

    await agent.call('removeEndpoint', { id: id4 });
    await agent.call('removeEndpoint', { address: 'fd77::1' });
    assert.deepEqual(await ipEndpoints(ns), []);
  });

  test('endpoints added with ip mptcp show in our list', async () => {
    await ip(ns, 'mptcp', 'endpoint', 'add', '10.77.0.9', 'dev', 'nl0', 'id', '42', 'signal', 'backup');
    await ip(ns, 'mptcp', 'endpoint', 'add', 'fd77::9', 'subflow', 'fullmesh');
    const listed = await agent.call<PmEndpoint[]>('listEndpoints');
    const a = listed.find((e) => e.address === '10.77.0.9');
    assert.ok(a, JSON.stringify(listed));
    assert.equal(a.id, 42);
    assert.equal(a.family, 4);
    assert.deepEqual(a.flagNames, ['signal', 'backup']);
    assert.equal(a.ifname, 'nl0');
    const b = listed.find((e) => e.address === 'fd77::9');
    assert.ok(b, JSON.stringify(listed));
    assert.equal(b.family, 6);
    assert.deepEqual(b.flagNames, ['subflow', 'fullmesh']);
    assert.equal(b.ifindex, 0);
    assert.equal(b.ifname, null);
    assert.equal(listed.length, (await ipEndpoints(ns)).length);

    await agent.call('flushEndpoints');
    assert.deepEqual(await ipEndpoints(ns), []);
    assert.deepEqual(await agent.call('listEndpoints'), []);
  });

  test('backup and fullmesh change in place, by id or by address', async () => {
    const id = await agent.call<number>('addEndpoint', { address: '10.77.0.1', device: 'nl0', flags: ['subflow'] });
    await agent.call('setEndpointFlags', { id }, { backup: true });
    assert.deepEqual(ipFlagNames((await ipEndpoints(ns))[0]!), ['subflow', 'backup']);
    await agent.call('setEndpointFlags', { address: '10.77.0.1' }, { fullmesh: true });
    assert.deepEqual(ipFlagNames((await ipEndpoints(ns))[0]!), ['subflow', 'backup', 'fullmesh']);
    await agent.call('setEndpointFlags', { id }, { backup: false, fullmesh: false });
    assert.deepEqual(ipFlagNames((await ipEndpoints(ns))[0]!), ['subflow']);
    await agent.call('setEndpointFlags', { address: '10.77.0.1' }, ['subflow', 'backup']);
    assert.deepEqual((await agent.call<PmEndpoint[]>('listEndpoints'))[0]!.flagNames, ['subflow', 'backup']);
    await agent.call('removeEndpoint', { id });
  });

  test('bad requests fail with a code and say why', async () => {
    const badAddr = await agent.callError('addEndpoint', { address: 'not-an-ip', flags: ['subflow'] });
    assert.equal(badAddr.code, 'ERR_INVALID_ARG_VALUE');
    assert.match(badAddr.message, /address/);
    const badFlag = await agent.callError('addEndpoint', { address: '10.77.0.1', flags: ['warp'] });
    assert.equal(badFlag.code, 'ERR_INVALID_ARG_VALUE');
    const noDev = await agent.callError('addEndpoint', { address: '10.77.0.1', device: 'nosuchdev0' });
    assert.equal(noDev.code, 'ENODEV');
    const missing = await agent.callError('removeEndpoint', { id: 200 });
    assert.match(missing.code, /^E[A-Z]+$/);
    assert.match(missing.message, /endpoint 200/);
    const byAddr = await agent.callError('removeEndpoint', { address: '10.77.0.200' });
    assert.equal(byAddr.code, 'ENOENT');
    const flagsMissing = await agent.callError('setEndpointFlags', { id: 201 }, { backup: true });
    assert.equal(flagsMissing.code, 'ENOENT');
    assert.deepEqual(await ipEndpoints(ns), []);
  });

  test('limits agree with ip mptcp limits both ways', async () => {
    const initial = await agent.call<PmLimits>('getLimits');
    assert.deepEqual(initial, await ipLimits(ns));
    assert.deepEqual(await agent.call('setLimits', { subflows: 5, addAddrAccepted: 3 }), { subflows: 5, addAddrAccepted: 3 });
    assert.deepEqual(await ipLimits(ns), { subflows: 5, addAddrAccepted: 3 });
    // an absent limit is left alone
    assert.deepEqual(await agent.call('setLimits', { subflows: 2 }), { subflows: 2, addAddrAccepted: 3 });
    assert.deepEqual(await ipLimits(ns), { subflows: 2, addAddrAccepted: 3 });
    await ip(ns, 'mptcp', 'limits', 'set', 'subflows', '7', 'add_addr_accepted', '6');
    assert.deepEqual(await agent.call('getLimits'), { subflows: 7, addAddrAccepted: 6 });
    const tooMany = await agent.callError('setLimits', { subflows: 1000 });
    assert.equal(tooMany.code, 'EINVAL');
    assert.match(tooMany.message, /maximum/);  // the kernel's extended-ack text
    assert.deepEqual(await ipLimits(ns), { subflows: 7, addAddrAccepted: 6 });
  });

  test('without CAP_NET_ADMIN: changes fail with EPERM, reads still work', async (t) => {
    const dropper = await capabilityDropper();
    if (!dropper) return skipOrFail(t, 'netlink without CAP_NET_ADMIN (netlink.test.ts)', 'neither capsh nor setpriv can drop CAP_NET_ADMIN here');
    await ip(ns, 'mptcp', 'endpoint', 'add', '10.77.0.5', 'id', '5', 'subflow');
    const before = await ipEndpoints(ns);
    const limitsBefore = await ipLimits(ns);
    const calls = [
      { fn: 'listEndpoints' },
      { fn: 'getLimits' },
      { fn: 'addEndpoint', args: [{ address: '10.77.0.6', flags: ['subflow'] }] },
      { fn: 'removeEndpoint', args: [{ id: 5 }] },
      { fn: 'setEndpointFlags', args: [{ id: 5 }, ['subflow', 'backup']] },
      { fn: 'flushEndpoints' },
      { fn: 'setLimits', args: [{ subflows: 1 }] },
      { fn: 'pmEvents', args: [] },
      { fn: 'linkWatch', args: [] },
    ];
    const { stdout } = await run(['ip', 'netns', 'exec', ns.name, ...dropper(`${JSON.stringify(process.execPath)} ${JSON.stringify(AGENT)} '${JSON.stringify({ calls })}'`)]);
    const answers = JSON.parse(stdout.trim().split('\n').pop()!) as Array<{ ok: boolean; value?: unknown; code?: string }>;
    assert.equal(answers[0]!.ok, true);
    assert.deepEqual((answers[0]!.value as PmEndpoint[]).map((e) => e.id), [5]);
    assert.deepEqual(answers[1]!.value, limitsBefore);
    for (const i of [2, 3, 4, 5, 6]) assert.equal(answers[i]!.code, 'EPERM', `${calls[i]!.fn}: ${JSON.stringify(answers[i])}`);
    // pmEvents and linkWatch need a callback: they must fail on the argument, not reach the kernel
    assert.equal(answers[7]!.code, 'ERR_INVALID_ARG_VALUE');
    assert.equal(answers[8]!.code, 'ERR_INVALID_ARG_VALUE', `linkWatch: ${JSON.stringify(answers[8])}`);
    assert.deepEqual(await ipEndpoints(ns), before);
    assert.deepEqual(await ipLimits(ns), limitsBefore);

    // subscribing to MPTCP events needs CAP_NET_ADMIN too (the kernel flags the group so)
    const sub = await run(['ip', 'netns', 'exec', ns.name, ...dropper(
      `${JSON.stringify(process.execPath)} -e ${JSON.stringify(`try { require(${JSON.stringify(path.join(__dirname, '..', 'electron', 'core', 'native', 'netlink.js'))}).pmEvents(() => {}).close(); console.log('OK') } catch (e) { console.log(e.code) }`)}`)]);
    assert.equal(sub.stdout.trim(), 'EPERM');

    // watching links is a read: it works without the capability and sees a link appear
    const nl = JSON.stringify(path.join(__dirname, '..', 'electron', 'core', 'native', 'netlink.js'));
    const script = `const w = require(${nl}).linkWatch((e) => { if (e.ifname === 'nlcap0') { console.log(JSON.stringify(e)); w.close(); } }); console.log('watching'); setTimeout(() => process.exit(3), ${STEP_MS}).unref();`;
    const watcher = spawn('ip', ['netns', 'exec', ns.name, ...dropper(`${JSON.stringify(process.execPath)} -e ${JSON.stringify(script)}`)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let stderr = '';
    const ended = new Promise<number | null>((resolve) => watcher.on('exit', (code) => resolve(code)));
    readline.createInterface({ input: watcher.stdout! }).on('line', (l) => lines.push(l));
    watcher.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    for (let i = 0; i < STEP_MS / 20 && !lines.includes('watching') && watcher.exitCode === null; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(lines.includes('watching'), `the unprivileged watcher did not start: ${stderr}`);
    await ip(ns, 'link', 'add', 'nlcap0', 'type', 'veth', 'peer', 'name', 'nlcap1');
    assert.equal(await ended, 0, `the unprivileged watcher saw no event for nlcap0: ${lines.join(' | ')} ${stderr}`);
    const seen = JSON.parse(lines.find((l) => l.startsWith('{'))!) as LinkEvent & Record<string, unknown>;
    assert.deepEqual([seen.kind, seen.action, seen.ifname], ['link', 'new', 'nlcap0']);
    await ip(ns, 'link', 'del', 'nlcap0');
    await ip(ns, 'mptcp', 'endpoint', 'flush');
  });

  test('listLinks / listAddresses / listRoutes match ip', async () => {
    await ip(ns, 'route', 'add', 'default', 'via', '10.77.0.254');
    const links = await agent.call<Array<{ ifname: string; ifindex: number; up: boolean; mtu: number }>>('listLinks');
    const ipLinks = JSON.parse(await ip(ns, '-j', 'link', 'show')) as Array<{ ifname: string; ifindex: number; mtu: number; flags: string[] }>;
    assert.deepEqual(links.map((l) => [l.ifindex, l.ifname, l.mtu, l.up]).sort(),
      ipLinks.map((l) => [l.ifindex, l.ifname, l.mtu, l.flags.includes('UP')]).sort());
    const addrs = await agent.call<Array<{ ifname: string; address: string; prefixlen: number }>>('listAddresses');
    const ipAddrs = (JSON.parse(await ip(ns, '-j', 'addr', 'show')) as Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>)
      .flatMap((l) => l.addr_info.map((a) => [l.ifname, a.local, a.prefixlen]));
    assert.deepEqual(addrs.map((a) => [a.ifname, a.address, a.prefixlen]).sort(), ipAddrs.sort());
    const routes = await agent.call<Array<{ isDefault: boolean; gateway: string | null; ifname: string | null; family: number }>>('listRoutes');
    const def = routes.find((r) => r.isDefault && r.family === 4);
    assert.ok(def, JSON.stringify(routes));
    assert.equal(def.gateway, '10.77.0.254');
    assert.equal(def.ifname, 'nl0');
    await ip(ns, 'route', 'del', 'default');
  });
});

describe('MPTCP events', { skip }, () => {
  let lo: Namespace;
  let client: Namespace;
  let server: Namespace;
  let loAgent: Agent;
  let clientAgent: Agent;
  let serverAgent: Agent;

  before(async () => {
    try {
      lo = await newNamespace('ev');
      client = await newNamespace('c');
      server = await newNamespace('s');
      for (const i of [1, 2]) {
        await run(['ip', 'link', 'add', `link${i}`, 'netns', client.name, 'type', 'veth', 'peer', 'name', `link${i}`, 'netns', server.name]);
        await ip(client, 'addr', 'add', `10.78.${i}.1/24`, 'dev', `link${i}`);
        await ip(server, 'addr', 'add', `10.78.${i}.2/24`, 'dev', `link${i}`);
        await ip(client, 'link', 'set', `link${i}`, 'up');
        await ip(server, 'link', 'set', `link${i}`, 'up');
      }
      loAgent = newAgent(lo);
      clientAgent = newAgent(client);
      serverAgent = newAgent(server);
      await Promise.all([loAgent.ready(), clientAgent.ready(), serverAgent.ready()]);
    } catch (err) {
      await cleanup();
      throw err;
    }
  });
  after(cleanup);

  test('loopback connection: created, established, closed with the right addresses and ports', async () => {
    await loAgent.op('pmEvents');
    const port = await loAgent.op<number>('listen', { host: '127.0.0.1' });
    const from = loAgent.mark;
    const c = await loAgent.op<{ conn: number; localPort: number }>('connect', { address: '127.0.0.1', port });
    const isClient = (e: Ev): boolean => 'sport' in e && e.sport === c.localPort && e.dport === port;
    const isServer = (e: Ev): boolean => 'sport' in e && e.sport === port && e.dport === c.localPort;
    for (const type of ['created', 'established'] as const) {
      const cl = (await loAgent.event<Ev>('pm', (e) => e.type === type && isClient(e), from, `client ${type}`)).data as Ev & { token: number };
      assert.equal(cl.family, 4);
      assert.equal(cl.saddr, '127.0.0.1');
      assert.equal(cl.daddr, '127.0.0.1');
      assert.notEqual(cl.serverSide, true);
      const sv = (await loAgent.event<Ev>('pm', (e) => e.type === type && isServer(e), from, `server ${type}`)).data as Ev & { token: number };
      assert.equal(sv.serverSide, true);
      assert.notEqual(sv.token, cl.token);
    }
    const tokens = loAgent.events<Ev>('pm', from).filter((e) => e.type === 'established').map((e) => (e as { token: number }).token);
    await loAgent.op('closeConn', { conn: c.conn });
    for (const token of tokens) {
      await loAgent.event<Ev>('pm', (e) => e.type === 'closed' && e.token === token, from, `closed for token ${token}`);
    }
    // Every callback ran in a callback scope: microtasks queued by one ran before the next.
    const lines = (loAgent as unknown as { lines: Array<{ event?: string; previousMicrotaskRan?: boolean }> }).lines.slice(from).filter((l) => l.event === 'pm');
    assert.ok(lines.length >= 6);
    assert.ok(lines.every((l) => l.previousMicrotaskRan === true), JSON.stringify(lines));
  });

  test('second link: sub_established from the endpoint, sub_priority on backup, sub_closed on removal', async () => {
    for (const a of [clientAgent, serverAgent]) await a.call('setLimits', { subflows: 4, addAddrAccepted: 4 });
    const endpointId = await clientAgent.call<number>('addEndpoint', { address: '10.78.2.1', device: 'link2', flags: ['subflow'] });
    const link2Index = (await clientAgent.call<Array<{ ifname: string; ifindex: number }>>('listLinks')).find((l) => l.ifname === 'link2')!.ifindex;
    await clientAgent.op('pmEvents');
    await serverAgent.op('pmEvents');
    const port = await serverAgent.op<number>('listen', { host: '10.78.1.2' });
    const from = clientAgent.mark;
    const sFrom = serverAgent.mark;
    const c = await clientAgent.op<{ conn: number; localPort: number }>('connect', { address: '10.78.1.2', port });

    const est = (await clientAgent.event<Ev>('pm', (e) => e.type === 'established' && e.sport === c.localPort, from, 'established')).data as Ev & { token: number };
    const sub = (await clientAgent.event<Ev>('pm', (e) => e.type === 'sub_established' && e.token === est.token, from, 'sub_established')).data as Ev & Record<string, unknown>;
    assert.equal(sub.saddr, '10.78.2.1');
    assert.equal(sub.daddr, '10.78.1.2');
    assert.equal(sub.dport, port);
    assert.equal(sub.locId, endpointId);
    assert.equal(sub.remId, 0);
    assert.equal(sub.ifindex, link2Index);
    assert.equal(sub.ifname, 'link2');
    assert.equal(sub.backup, false);
    const serverSub = (await serverAgent.event<Ev>('pm', (e) => e.type === 'sub_established' && e.saddr === '10.78.1.2' && e.daddr === '10.78.2.1', sFrom, 'server sub_established')).data;
    assert.equal(serverSub.family, 4);

    // Backup on the endpoint: the kernel sends MP_PRIO for its subflows, and the peer reports it.
    const prioFrom = serverAgent.mark;
    await clientAgent.call('setEndpointFlags', { id: endpointId }, { backup: true });
    const prio = (await serverAgent.event<Ev>('pm', (e) => e.type === 'sub_priority', prioFrom, 'server sub_priority')).data;
    assert.equal(prio.backup, true);
    assert.equal(prio.daddr, '10.78.2.1');

    // Removing the endpoint tears its subflow down; the connection itself lives on.
    const rmFrom = clientAgent.mark;
    await clientAgent.call('removeEndpoint', { id: endpointId });
    const closed = (await clientAgent.event<Ev>('pm', (e) => e.type === 'sub_closed' && e.token === est.token, rmFrom, 'sub_closed')).data;
    assert.equal(closed.saddr, '10.78.2.1');
    assert.equal(clientAgent.events<Ev>('pm', rmFrom).some((e) => e.type === 'closed'), false);
    await clientAgent.op('closeConn', { conn: c.conn });
    await clientAgent.event<Ev>('pm', (e) => e.type === 'closed' && e.token === est.token, rmFrom, 'closed');
  });
});

describe('link watch', { skip }, () => {
  let ns: Namespace;
  let agent: Agent;

  before(async () => {
    try {
      ns = await newNamespace('lw');
      agent = newAgent(ns);
      await agent.ready();
      await agent.op('linkWatch');
    } catch (err) {
      await cleanup();
      throw err;
    }
  });
  after(cleanup);

  const linkEv = (pred: (e: LinkEvent & Record<string, unknown>) => boolean, from: number, what: string) =>
    agent.event<LinkEvent & Record<string, unknown>>('link', pred, from, what, LINK_EVENT_MS).then((l) => l.data);

  test('new veth, address, up, default route, down, delete: each reported within a second', async () => {
    let from = agent.mark;
    await ip(ns, 'link', 'add', 'lwa', 'type', 'veth', 'peer', 'name', 'lwb');
    const created = await linkEv((e) => e.kind === 'link' && e.action === 'new' && e.ifname === 'lwa', from, 'new link lwa');
    assert.equal(created.up, false);
    assert.equal(created.linkKind, 'veth');
    const ifindex = created.ifindex as number;

    from = agent.mark;
    await ip(ns, 'addr', 'add', '10.79.0.1/24', 'dev', 'lwa');
    const addr = await linkEv((e) => e.kind === 'addr' && e.action === 'new' && e.address === '10.79.0.1', from, 'new address');
    assert.deepEqual([addr.family, addr.prefixlen, addr.ifindex, addr.ifname], [4, 24, ifindex, 'lwa']);

    from = agent.mark;
    await ip(ns, '-6', 'addr', 'add', 'fd79::1/64', 'dev', 'lwa', 'nodad');
    const addr6 = await linkEv((e) => e.kind === 'addr' && e.action === 'new' && e.address === 'fd79::1', from, 'new IPv6 address');
    assert.deepEqual([addr6.family, addr6.prefixlen, addr6.ifname], [6, 64, 'lwa']);

    from = agent.mark;
    await ip(ns, 'link', 'set', 'lwa', 'up');
    await ip(ns, 'link', 'set', 'lwb', 'up');
    await linkEv((e) => e.kind === 'link' && e.ifname === 'lwa' && e.up === true && e.running === true, from, 'lwa up and running');

    from = agent.mark;
    await ip(ns, 'route', 'add', 'default', 'via', '10.79.0.2');
    const route = await linkEv((e) => e.kind === 'route' && e.action === 'new' && e.isDefault === true, from, 'default route');
    assert.deepEqual([route.family, route.gateway, route.ifname, route.table], [4, '10.79.0.2', 'lwa', 254]);

    from = agent.mark;
    await ip(ns, 'link', 'set', 'lwb', 'down');
    await linkEv((e) => e.kind === 'link' && e.ifname === 'lwa' && e.up === true && e.running === false, from, 'lwa loses carrier');
    await ip(ns, 'link', 'set', 'lwa', 'down');
    await linkEv((e) => e.kind === 'link' && e.ifname === 'lwa' && e.up === false, from, 'lwa down');

    from = agent.mark;
    await ip(ns, 'addr', 'del', '10.79.0.1/24', 'dev', 'lwa');
    await linkEv((e) => e.kind === 'addr' && e.action === 'del' && e.address === '10.79.0.1' && e.ifname === 'lwa', from, 'address removed');

    from = agent.mark;
    await ip(ns, 'link', 'del', 'lwa');
    const gone = await linkEv((e) => e.kind === 'link' && e.action === 'del' && e.ifindex === ifindex, from, 'lwa deleted');
    assert.equal(gone.ifname, 'lwa');
    // the IPv6 address goes with the link, and still carries the link's name
    const addrGone = agent.events<LinkEvent & Record<string, unknown>>('link', from).find((e) => e.kind === 'addr' && e.address === 'fd79::1');
    assert.equal(addrGone?.action, 'del');
    assert.equal(addrGone?.ifname, 'lwa');
  });

  test('no events after close', async () => {
    await agent.op('unwatch', { which: 'link' });
    const from = agent.mark;
    await ip(ns, 'link', 'add', 'lwc', 'type', 'veth', 'peer', 'name', 'lwd');
    // Bounded wait for something that must not come: the ping round-trip orders it after any event.
    await new Promise((r) => setTimeout(r, 200));
    await agent.request('call', { fn: 'getLimits' });
    assert.deepEqual(agent.events('link', from), []);
  });
});

describe('watch handles and the process lifetime', { skip }, () => {
  let ns: Namespace;
  before(async () => { ns = await newNamespace('life'); });
  after(cleanup);

  const lifecycle = (mode: string, ms: number) =>
    run(['ip', 'netns', 'exec', ns.name, process.execPath, AGENT, 'lifecycle', mode], { timeoutMs: ms, allowFailure: true });

  test('closed watches let the process exit', async () => {
    const r = await lifecycle('closed', 5000);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { closed: [true, true] });
  });

  test('unref() lets the process exit with watches open', async () => {
    const r = await lifecycle('unref', 5000);
    assert.equal(r.code, 0, r.stderr);
  });

  test('an open watch keeps the process alive', async () => {
    const r = await lifecycle('open', 1000);
    assert.notEqual(r.code, 0, 'the process exited although a watch was open');
    assert.match(r.stdout, /"open":true/);
  });

  test('a throwing callback reaches uncaughtException and close() inside it works', async () => {
    const r = await lifecycle('throw', 5000);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n')[0]!), { uncaught: 'boom from the callback', seen: 1, closed: true });
  });
});


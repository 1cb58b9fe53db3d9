/**
 * The reconciler's rules that paths-unit.test.ts shows on an in-memory endpoint table, again on the
 * real mptcp_pm: each test gets a fresh network namespace (the kernel's default limits, 2 subflows
 * and 0 ADD_ADDR accepted), the Reconciler runs inside it through test/helpers/reconciler-agent.ts,
 * and every outcome is read back with iproute2 (`ip mptcp endpoint|limits show`), not our addon.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterEach, describe, test } from 'node:test';
import type { OwnedEndpoint, ReconcileReport } from '../electron/core/paths/reconcile';
import type { PathsConfig } from '../electron/core/paths/policy';
import { missingPrerequisite } from './helpers/multipath-harness';
import { Namespace, skipUnlessRoot } from './helpers/netns';
import { ip, ipEndpoints, ipLimits, type IpEndpoint } from './helpers/paths-harness';
import { requireFor } from './helpers/prerequisites';

const skip = requireFor('the reconciler on the real mptcp_pm (paths-kernel.test.ts)', skipUnlessRoot() ?? missingPrerequisite());
const AGENT = path.join(__dirname, 'helpers', 'reconciler-agent.js');
const STEP_MS = 10_000;
const KERNEL_DEFAULT = { subflows: 2, addAddrAccepted: 0 };
const net8 = (process.pid % 200) + 20;
const addr = (i: number): string => `10.${net8}.${i}.1`;

/** The reconciler-agent in one namespace, one request at a time. */
class Agent {
  private readonly child: ChildProcess;
  private readonly answers: Array<Record<string, unknown>> = [];
  private readonly waiters = new Set<() => void>();
  private stderr = '';
  private exited = false;

  constructor(ns: Namespace) {
    this.child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, AGENT], { stdio: ['pipe', 'pipe', 'pipe'] });
    readline.createInterface({ input: this.child.stdout! }).on('line', (l) => {
      this.answers.push(JSON.parse(l) as Record<string, unknown>);
      for (const w of [...this.waiters]) w();
    });
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-8000); });
    this.child.on('exit', () => { this.exited = true; for (const w of [...this.waiters]) w(); });
  }

  private next(what: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (this.answers.length) { done(); resolve(this.answers.shift()!); return true; }
        if (this.exited) { done(); reject(new Error(`agent exited before ${what}: ${this.stderr}`)); return true; }
        return false;
      };
      const timer = setTimeout(() => { done(); reject(new Error(`no ${what} within ${STEP_MS} ms: ${this.stderr}`)); }, STEP_MS);
      const done = (): void => { clearTimeout(timer); this.waiters.delete(check); };
      if (!check()) this.waiters.add(check);
    });
  }

  async ready(): Promise<void> { await this.next('ready'); }

  async op<T>(op: string, fields: Record<string, unknown> = {}): Promise<T> {
    this.child.stdin!.write(JSON.stringify({ op, ...fields }) + '\n');
    const a = await this.next(`answer to ${op}`);
    if (a.ok !== true) throw Object.assign(new Error(`${op}: ${String(a.message)}`), { code: a.code });
    return a.value as T;
  }

  apply(config: Partial<PathsConfig>): Promise<ReconcileReport> { return this.op('apply', { config }); }
  cleanup(): Promise<ReconcileReport> { return this.op('cleanup'); }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.stdin!.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await new Promise<void>((r) => { if (this.exited) r(); else this.child.once('exit', () => r()); });
    clearTimeout(t);
  }
}

const live: Array<{ ns: Namespace; agent: Agent | null; dir: string }> = [];

afterEach(async () => {
  for (const l of live.splice(0)) {
    await l.agent?.stop();
    await l.ns.destroy();
    fs.rmSync(l.dir, { recursive: true, force: true });
  }
});

/**
 * A fresh namespace with interface ka0 (veth, up) holding `addresses` addresses, and the agent in
 * it. Its state file is in a throwaway directory.
 */
async function rig(addresses: number): Promise<{ ns: Namespace; agent: Agent; stateFile: string; start(stateFile?: string | null): Promise<OwnedEndpoint[]> }> {
  const ns = await Namespace.create(`braid-pk-${process.pid}-${crypto.randomBytes(3).toString('hex')}`);
  const entry: { ns: Namespace; agent: Agent | null; dir: string } = { ns, agent: null, dir: fs.mkdtempSync(path.join(os.tmpdir(), 'braid-pk-')) };
  live.push(entry);
  await ip(ns, 'link', 'add', 'ka0', 'type', 'veth', 'peer', 'name', 'kb0');
  for (let i = 1; i <= addresses; i++) await ip(ns, 'addr', 'add', `${addr(i)}/24`, 'dev', 'ka0');
  await ip(ns, 'link', 'set', 'kb0', 'up');
  await ip(ns, 'link', 'set', 'ka0', 'up');
  const agent = new Agent(ns);
  entry.agent = agent;
  await agent.ready();
  const stateFile = path.join(entry.dir, 'paths-owned.json');
  return { ns, agent, stateFile, start: (file = stateFile) => agent.op<OwnedEndpoint[]>('open', { stateFile: file }) };
}

const use = { interfaces: { ka0: 'use' as const } };
const ka0Endpoints = async (ns: Namespace): Promise<IpEndpoint[]> => (await ipEndpoints(ns)).filter((e) => e.dev === 'ka0');

describe('the reconciler on the real mptcp_pm, checked with ip mptcp', { skip, timeout: 60_000 }, () => {
  test('limits: raised to the subflow endpoints and put back at cleanup; an admin\'s limits, before or after, are kept', async () => {
    // Raised for three endpoints, then put back to the kernel's defaults.
    const a = await rig(3);
    await a.start(null);
    assert.deepEqual(await ipLimits(a.ns), KERNEL_DEFAULT);
    const rep = await a.agent.apply(use);
    assert.equal(rep.error, null, JSON.stringify(rep.error));
    assert.deepEqual((await ka0Endpoints(a.ns)).map((e) => e.address).sort(), [addr(1), addr(2), addr(3)]);
    assert.deepEqual(await ipLimits(a.ns), { subflows: 3, addAddrAccepted: 3 });
    await a.agent.cleanup();
    assert.deepEqual(await ipEndpoints(a.ns), []);
    assert.deepEqual(await ipLimits(a.ns), KERNEL_DEFAULT);

    // An administrator's limits, already high enough: left as they are, also at cleanup.
    await ip(a.ns, 'mptcp', 'limits', 'set', 'subflows', '5', 'add_addr_accepted', '4');
    await a.start(null);
    await a.agent.apply(use);
    assert.equal((await ka0Endpoints(a.ns)).length, 3);
    assert.deepEqual(await ipLimits(a.ns), { subflows: 5, addAddrAccepted: 4 });
    await a.agent.cleanup();
    assert.deepEqual(await ipEndpoints(a.ns), []);
    assert.deepEqual(await ipLimits(a.ns), { subflows: 5, addAddrAccepted: 4 }, 'cleanup changed limits it never raised');

    // Raised by Braid, then changed by an administrator: cleanup does not undo the administrator.
    await ip(a.ns, 'mptcp', 'limits', 'set', 'subflows', '2', 'add_addr_accepted', '0');
    await a.start(null);
    await a.agent.apply(use);
    assert.deepEqual(await ipLimits(a.ns), { subflows: 3, addAddrAccepted: 3 });
    await ip(a.ns, 'mptcp', 'limits', 'set', 'subflows', '6', 'add_addr_accepted', '5');
    await a.agent.cleanup();
    assert.deepEqual(await ipEndpoints(a.ns), []);
    assert.deepEqual(await ipLimits(a.ns), { subflows: 6, addAddrAccepted: 5 }, 'cleanup undid an administrator\'s limits');
  });

  test('maxSubflows caps what is asked of the kernel: every endpoint, but limits of 3', async () => {
    const a = await rig(4);
    await a.start(null);
    const rep = await a.agent.apply({ ...use, maxSubflows: 3 });
    assert.equal(rep.error, null, JSON.stringify(rep.error));
    const eps = await ka0Endpoints(a.ns);
    assert.deepEqual(eps.map((e) => e.address).sort(), [addr(1), addr(2), addr(3), addr(4)]);
    assert.ok(eps.every((e) => e.subflow && !e.backup && !e.signal), JSON.stringify(eps));
    assert.deepEqual(await ipLimits(a.ns), { subflows: 3, addAddrAccepted: 3 });
    await a.agent.cleanup();
    assert.deepEqual(await ipLimits(a.ns), KERNEL_DEFAULT);
  });

  test('a recorded id that the kernel now gives to another address is not adopted, nor removed', async () => {
    const a = await rig(1);
    const foreign = `10.${net8}.77.7`;
    // The record says we made id 20 for addr(1); the kernel's id 20 is an administrator's, on another address.
    fs.writeFileSync(a.stateFile, JSON.stringify({ owned: [{ id: 20, address: addr(1), ifindex: 2, backup: false }], originalLimits: null, raisedTo: null }));
    await ip(a.ns, 'mptcp', 'endpoint', 'add', foreign, 'id', '20', 'signal');
    const before = await ipEndpoints(a.ns);
    assert.deepEqual(await a.start(), [], 'adopted an endpoint by its id alone');
    await a.agent.cleanup();
    assert.deepEqual(await ipEndpoints(a.ns), before, 'cleanup touched the administrator\'s endpoint');

    // Managing addr(1) now gives it an endpoint of its own; the administrator's stays as it was.
    await a.agent.apply(use);
    const mine = (await ipEndpoints(a.ns)).find((e) => e.address === addr(1));
    assert.ok(mine && mine.id !== 20 && mine.dev === 'ka0', JSON.stringify(await ipEndpoints(a.ns)));
    await a.agent.cleanup();
    assert.deepEqual(await ipEndpoints(a.ns), before);
  });

  test('an address the kernel refuses (endpoint table full) does not hold back the rest, and is added once there is room', async () => {
    const a = await rig(3);
    // Seven endpoints of an administrator's: the kernel holds eight per namespace.
    for (let i = 1; i <= 7; i++) await ip(a.ns, 'mptcp', 'endpoint', 'add', `10.${net8}.90.${i}`, 'id', String(100 + i), 'signal');
    const foreign = await ipEndpoints(a.ns);
    await a.start();
    const first = await a.agent.apply(use);
    // One fits, the kernel refuses the others with its own error.
    assert.equal(first.added.length, 1, JSON.stringify(first));
    assert.equal(first.error?.code, 'ERANGE', JSON.stringify(first.error));
    const placed = await ka0Endpoints(a.ns);
    assert.deepEqual(placed.map((e) => [e.id, e.address]), first.added.map((o) => [o.id, o.address]));
    // The refusal did not stop the rest of the reconcile: limits were still raised for the one added.
    assert.deepEqual(await ipLimits(a.ns), { subflows: 2, addAddrAccepted: 1 });

    // Room again: the next reconcile adds the rest and leaves the first one as it was.
    await ip(a.ns, 'mptcp', 'endpoint', 'del', 'id', '106');
    await ip(a.ns, 'mptcp', 'endpoint', 'del', 'id', '107');
    const second = await a.agent.apply(use);
    assert.equal(second.error, null, JSON.stringify(second.error));
    const all = await ka0Endpoints(a.ns);
    assert.deepEqual(all.map((e) => e.address).sort(), [addr(1), addr(2), addr(3)]);
    assert.ok(all.some((e) => e.id === placed[0]!.id && e.address === placed[0]!.address), 'the endpoint added first was re-created');
    assert.deepEqual(await ipLimits(a.ns), { subflows: 3, addAddrAccepted: 3 });

    await a.agent.cleanup();
    assert.deepEqual(await ipEndpoints(a.ns), foreign.slice(0, 5), 'cleanup touched the administrator\'s endpoints');
    assert.deepEqual(await ipLimits(a.ns), KERNEL_DEFAULT);
  });
});

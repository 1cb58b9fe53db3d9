// Path management end to end: `braid up` inside a throwaway network namespace manages that
// namespace's MPTCP endpoints, checked with iproute2 (`ip mptcp endpoint/limits`), never with our
// own addon. Links come and go, the policy changes through `braid paths set` on the watched config
// file, a foreign endpoint must survive everything, a kill -9 must not strand endpoints or limits,
// and without CAP_NET_ADMIN nothing changes while the proxy still works and the reason is shown.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalIPv6, Namespace, skipUnlessRoot } from './helpers/netns';
import { CLI_PATH, LISTENING_LINE, runBraid, runProcess, startBraid, startProcess, type BraidProxy, type Running } from './helpers/proc';
import { missingPrerequisite, SERVE_BYTES } from './helpers/multipath-harness';
import { expectedSha256 } from './helpers/byte-stream';
import { capabilityDropper, flagsOf, ip, ipEndpoints, ipLimits, killOnSignal, scratchDir, shellQuote, until, type IpEndpoint } from './helpers/paths-harness';
import { PRIVILEGE_HELP } from '../electron/core/paths/manager';
import crypto from 'node:crypto';
import path from 'node:path';
import { requireFor, skipOrFail } from './helpers/prerequisites';

const skip = requireFor('path management in a namespace (paths.test.ts)', skipUnlessRoot() ?? missingPrerequisite());
const NEW_LINK_MS = 1000;      // the bar: an endpoint within a second of the address
const POLICY_MS = 3000;        // config file watch (50 ms debounce) + reconcile, with slack for a loaded host
const START_MS = 15_000;
const SOCKS_FETCH = path.join(__dirname, 'helpers', 'socks-fetch.js');

const tag = crypto.randomBytes(2).toString('hex');
const octet = (process.pid % 200) + 20;
const A4 = `10.${octet}.1.1`;
// As `ip mptcp endpoint` prints it (compared as text).
const A6 = canonicalIPv6(`fd${tag.slice(0, 2)}:${tag.slice(2)}::1`);
const FOREIGN = `10.${octet}.9.1`;      // on fx0, an address Braid's policy would manage
const FOREIGN_ID = 50;

interface PathsJson {
  managed: boolean;
  reason: string | null;
  interfaces: Array<{ name: string; state: string; policy: string; endpoints: Array<{ id: number; address: string; flags: string[]; owner: string }> }>;
  foreign: Array<{ id: number; address: string }>;
  limits: { subflows: number; addAddrAccepted: number } | null;
}

describe('path management in a namespace', { skip, timeout: 90_000 }, () => {
  let ns: Namespace;
  const files = scratchDir('ns');
  const running: Running[] = [];
  let foreignBefore: IpEndpoint;
  let limitsBefore: { subflows: number; addAddrAccepted: number };

  const inNs = (): string[] => ['ip', 'netns', 'exec', ns.name];
  const up = async (): Promise<BraidProxy> => {
    const b = await startBraid(['up', '-v', '--port', '0', '--config', files.config, '--state-dir', files.state], { prefix: inNs(), timeoutMs: START_MS });
    running.push(killOnSignal(b));
    return b;
  };
  const pathsJson = async (): Promise<PathsJson> => {
    const r = await runBraid(['paths', '--json', '--config', files.config, '--state-dir', files.state], { prefix: inNs(), timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.toString()) as PathsJson;
  };
  const setPolicy = async (policy: string): Promise<void> => {
    const r = await runBraid(['paths', 'set', 'pa0', policy, '--config', files.config], { prefix: inNs(), timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
  };
  const ours = async (): Promise<IpEndpoint[]> => (await ipEndpoints(ns)).filter((e) => e.id !== FOREIGN_ID);
  const assertForeignIntact = async (when: string): Promise<void> => {
    const f = (await ipEndpoints(ns)).find((e) => e.id === FOREIGN_ID);
    assert.deepEqual(f, foreignBefore, `foreign endpoint changed ${when}`);
  };
  const addLink = async (): Promise<void> => {
    await ip(ns, 'link', 'add', 'pa0', 'type', 'veth', 'peer', 'name', 'pb0');
    await ip(ns, 'addr', 'add', `${A4}/24`, 'dev', 'pa0');
    await ip(ns, '-6', 'addr', 'add', `${A6}/64`, 'dev', 'pa0', 'nodad');
    await ip(ns, 'link', 'set', 'pb0', 'up');
    await ip(ns, 'link', 'set', 'pa0', 'up');
  };
  const endpointsOnPa0 = (flags: string[]) => async (): Promise<IpEndpoint[] | undefined> => {
    const e = (await ours()).filter((x) => x.dev === 'pa0');
    const ok = e.length === 2 && [A4, A6].every((a) => e.some((x) => x.address === a)) && e.every((x) => flagsOf(x).join() === flags.join());
    return ok ? e : undefined;
  };

  before(async () => {
    ns = await Namespace.create(`braid-paths-${process.pid}-${tag}`);
    await ip(ns, 'link', 'add', 'fx0', 'type', 'veth', 'peer', 'name', 'fx1');
    await ip(ns, 'addr', 'add', `${FOREIGN}/24`, 'dev', 'fx0');
    await ip(ns, 'link', 'set', 'fx1', 'up');
    await ip(ns, 'link', 'set', 'fx0', 'up');
    await ip(ns, 'mptcp', 'endpoint', 'add', FOREIGN, 'dev', 'fx0', 'id', String(FOREIGN_ID), 'signal');
    foreignBefore = (await ipEndpoints(ns))[0]!;
    limitsBefore = await ipLimits(ns);
    // veths are 'other' (off by default): this namespace's links are all to be used
    // Endpoints are the kernel path manager's: this suite pins it (Braid's own, per connection, is the default).
    files.write({ paths: { manager: 'kernel', defaults: { wifi: 'use', ethernet: 'use', cellular: 'backup', other: 'use' } } });
  });

  after(async () => {
    await Promise.all(running.map((r) => r.stop('SIGKILL', 1000)));
    await ns?.destroy();
  });

  test('links come and go, the policy changes, the foreign endpoint and the limits stay as found', async (t) => {
    const braid = await up();
    await assertForeignIntact('at start');
    let s = await pathsJson();
    assert.equal(s.managed, true, s.reason ?? '');
    assert.equal(s.interfaces.find((i) => i.name === 'fx0')?.state, 'managed-elsewhere');
    assert.deepEqual(s.foreign.map((e) => e.id), [FOREIGN_ID]);

    await addLink();
    const added = await until(endpointsOnPa0(['subflow']), NEW_LINK_MS, 'endpoints for pa0');
    t.diagnostic(`endpoints for a new link after ${added.ms.toFixed(0)} ms`);
    const ids = added.value.map((e) => e.id).sort();
    // two subflow endpoints: the kernel must allow two extra subflows and accept as many ADD_ADDRs
    const raised = await until(async () => {
      const l = await ipLimits(ns);
      return l.subflows >= 2 && l.addAddrAccepted >= 2 ? l : undefined;
    }, POLICY_MS, 'limits raised');
    assert.notDeepEqual(raised.value, limitsBefore);
    s = await pathsJson();
    const pa0 = s.interfaces.find((i) => i.name === 'pa0')!;
    assert.equal(pa0.state, 'active');
    assert.deepEqual(pa0.endpoints.map((e) => e.owner), ['braid', 'braid']);

    await setPolicy('backup');
    const backup = await until(endpointsOnPa0(['subflow', 'backup']), POLICY_MS, 'pa0 endpoints flagged backup');
    assert.deepEqual(backup.value.map((e) => e.id).sort(), ids, 'backup should change the flags in place, not re-create');
    await setPolicy('off');
    await until(async () => ((await ours()).length === 0 ? true : undefined), POLICY_MS, 'pa0 endpoints removed for policy off');
    await setPolicy('use');
    await until(endpointsOnPa0(['subflow']), POLICY_MS, 'pa0 endpoints back for policy use');
    await assertForeignIntact('after policy changes');

    await ip(ns, 'link', 'del', 'pa0');
    const removed = await until(async () => ((await ours()).length === 0 ? true : undefined), NEW_LINK_MS, 'endpoints removed with the link');
    t.diagnostic(`endpoints gone ${removed.ms.toFixed(0)} ms after the link`);
    await assertForeignIntact('after the link went');

    const log = braid.stderr();
    assert.match(log, new RegExp(`paths: endpoint ${A4.replace(/\./g, '\\.')} id \\d+ added`));
    assert.match(log, /paths: endpoint \S+ id \d+ now backup/);
    assert.match(log, new RegExp(`paths: endpoint ${A4.replace(/\./g, '\\.')} id \\d+ removed`));

    const exit = await braid.stop('SIGTERM', 5000);
    assert.equal(exit.code, 0, braid.stderr());
    assert.deepEqual(await ours(), []);
    await assertForeignIntact('after shutdown');
    assert.deepEqual(await ipLimits(ns), limitsBefore, 'limits not restored at shutdown');
  });

  test('kill -9: the guardian removes the endpoints and puts the limits back within 3 s, with nothing started again', async (t) => {
    await addLink();
    const first = await up();
    await until(endpointsOnPa0(['subflow']), NEW_LINK_MS + START_MS, 'endpoints before the crash');
    assert.notDeepEqual(await ipLimits(ns), limitsBefore);
    first.child.kill('SIGKILL');
    await first.exited;
    const gone = await until(async () => ((await ours()).length === 0 && JSON.stringify(await ipLimits(ns)) === JSON.stringify(limitsBefore) ? true : undefined), 3000, 'endpoints and limits put back by the guardian');
    t.diagnostic(`put back ${gone.ms.toFixed(0)} ms after SIGKILL`);
    await assertForeignIntact('after the guardian');
    await ip(ns, 'link', 'del', 'pa0');
  });

  test('kill -9 with no guardian (a power cut): the next start undoes the leftovers first, says so once, and cleans up at shutdown', async () => {
    await addLink();
    const first = await startBraid(['up', '-v', '--port', '0', '--config', files.config, '--state-dir', files.state], { prefix: inNs(), timeoutMs: START_MS, env: { ...process.env, BRAID_GUARDIAN: 'off' } });
    running.push(killOnSignal(first));
    const made = (await until(endpointsOnPa0(['subflow']), NEW_LINK_MS + START_MS, 'endpoints before the crash')).value;
    first.child.kill('SIGKILL');
    await first.exited;
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual((await ours()).map((e) => e.id).sort(), made.map((e) => e.id).sort(), 'the kernel should still hold the crashed run\'s endpoints');

    const second = await up();
    assert.match(second.stderr(), new RegExp(`a previous Braid \\(pid ${first.child.pid}\\) ended without cleaning up: undone: MPTCP endpoint`));
    await until(endpointsOnPa0(['subflow']), POLICY_MS, 'endpoints of the new run');
    const exit = await second.stop('SIGTERM', 5000);
    assert.equal(exit.code, 0, second.stderr());
    assert.deepEqual(await ours(), []);
    await assertForeignIntact('after the restart and shutdown');
    assert.deepEqual(await ipLimits(ns), limitsBefore, 'limits raised by the crashed run were not put back');
    const third = await up();
    assert.doesNotMatch(third.stderr(), /ended without cleaning up/, 'the recovery was reported twice');
    await third.stop('SIGTERM', 5000);
    await ip(ns, 'link', 'del', 'pa0');
  });

  test('without CAP_NET_ADMIN: the proxy works, nothing changes, and the reason is shown', async (t) => {
    const drop = await capabilityDropper();
    if (!drop) return skipOrFail(t, 'braid up without CAP_NET_ADMIN (paths.test.ts)', 'neither capsh nor setpriv can drop CAP_NET_ADMIN here');
    await addLink();
    const endpointsBefore = await ipEndpoints(ns);
    const server = await startProcess('ip', [...inNs().slice(1), process.execPath, SERVE_BYTES, '--port', '0'], { ready: /listening (\d+)/, timeoutMs: START_MS });
    running.push(killOnSignal(server));
    const serverPort = Number(server.match![1]);
    const cmd = ['exec', process.execPath, CLI_PATH, 'up', '-v', '--port', '0', '--config', files.config, '--state-dir', files.state].map(shellQuote).join(' ').replace(/^'exec'/, 'exec');
    const braid = await startProcess('ip', [...inNs().slice(1), ...drop(cmd)], { ready: LISTENING_LINE, timeoutMs: START_MS });
    running.push(killOnSignal(braid));
    const proxyPort = Number(braid.match![2]);

    const bytes = 1_000_000;
    const fetch = await startProcess('ip', [...inNs().slice(1), process.execPath, SOCKS_FETCH, '--proxy-port', String(proxyPort), '--address', A4, '--port', String(serverPort), '--bytes', String(bytes), '--timeout-ms', '15000'], { ready: /^\{.*\}$/m, timeoutMs: 20_000 });
    killOnSignal(fetch);
    const result = JSON.parse(fetch.match![0]) as { status: number; bytes: number; sha256: string };
    assert.equal(result.status, 200);
    assert.equal(result.sha256, expectedSha256(bytes));

    await until(async () => (braid.stderr().includes(PRIVILEGE_HELP) ? true : undefined), POLICY_MS, 'the log names the missing privilege');
    const s = await pathsJson();
    assert.equal(s.managed, false);
    assert.equal(s.reason, PRIVILEGE_HELP);
    assert.equal(s.interfaces.find((i) => i.name === 'pa0')?.state, 'unmanaged');
    // the unprivileged user running `braid paths` is told the same
    const listCmd = ['exec', process.execPath, CLI_PATH, 'paths', '--config', files.config, '--state-dir', files.state].map(shellQuote).join(' ').replace(/^'exec'/, 'exec');
    const listed = await runProcess('ip', [...inNs().slice(1), ...drop(listCmd)], { timeoutMs: 15_000 });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout.toString(), /note: path management needs CAP_NET_ADMIN/);

    assert.deepEqual(await ipEndpoints(ns), endpointsBefore);
    assert.deepEqual(await ipLimits(ns), limitsBefore);
    const exit = await braid.stop('SIGTERM', 5000);
    assert.equal(exit.code, 0, braid.stderr());
    assert.deepEqual(await ipEndpoints(ns), endpointsBefore);
    assert.deepEqual(await ipLimits(ns), limitsBefore);
    await server.stop('SIGTERM', 2000);
  });
});

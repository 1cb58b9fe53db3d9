/**
 * `braid paths daemon`, the least-privilege set-up the README recommends: path management alone, as
 * an unprivileged user whose only capability is CAP_NET_ADMIN (as build/linux/braid-paths.service
 * runs it: DynamicUser, AmbientCapabilities=CAP_NET_ADMIN, NoNewPrivileges), in a throwaway
 * namespace. The endpoints must follow the policy file, which the user changes with `braid paths
 * set` (also unprivileged), and go away on SIGTERM; checked with `ip mptcp`. Without the capability
 * the same daemon changes nothing and says why.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PRIVILEGE_HELP } from '../electron/core/paths/manager';
import { missingPrerequisite } from './helpers/multipath-harness';
import { canonicalIPv6, Namespace, skipUnlessRoot } from './helpers/netns';
import { flagsOf, ip, ipEndpoints, ipLimits, killOnSignal, until, type IpEndpoint } from './helpers/paths-harness';
import { requireFor } from './helpers/prerequisites';
import { runProcess, startProcess, type Running } from './helpers/proc';
import { cliForUser, NOBODY, repoForUser } from './helpers/as-user';

// A bound on the wait, not a speed claim: generous for a loaded CI machine.
const POLICY_MS = 6000;
const tag = crypto.randomBytes(2).toString('hex');
const octet = (process.pid % 200) + 20;
const A4 = `10.${octet}.3.1`;
// As `ip mptcp endpoint` prints it (compared as text).
const A6 = canonicalIPv6(`fd${tag.slice(0, 2)}:${tag.slice(2)}:3::1`);

function missingSetpriv(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && fs.existsSync(path.join(dir, 'setpriv'))) return undefined;
  return "needs setpriv (util-linux) to run as another user with only CAP_NET_ADMIN";
}

const skip = requireFor('braid paths daemon with only CAP_NET_ADMIN (paths-daemon.test.ts)', skipUnlessRoot() ?? missingPrerequisite() ?? missingSetpriv());

/** setpriv: user nobody, no supplementary groups, no new privileges, and exactly the capabilities given. */
const repo = repoForUser();
const CLI_PATH = cliForUser(repo);
const asNobody = (caps: string[]): string[] => {
  const set = ['-all', ...caps.map((c) => `+${c}`)].join(',');
  return [...repo.prefix, 'setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--no-new-privs',
    `--inh-caps=${set}`, `--ambient-caps=${set}`, `--bounding-set=${set}`];
};

describe('braid paths daemon as an unprivileged user with CAP_NET_ADMIN only', { skip, timeout: 60_000 }, () => {
  let ns: Namespace;
  let dir: string;
  let config: string;
  let state: string;
  const running: Running[] = [];

  before(async () => {
    ns = await Namespace.create(`braid-pd-${process.pid}-${tag}`);
    await ip(ns, 'link', 'add', 'pd0', 'type', 'veth', 'peer', 'name', 'pe0');
    await ip(ns, 'addr', 'add', `${A4}/24`, 'dev', 'pd0');
    await ip(ns, '-6', 'addr', 'add', `${A6}/64`, 'dev', 'pd0', 'nodad');
    await ip(ns, 'link', 'set', 'pe0', 'up');
    await ip(ns, 'link', 'set', 'pd0', 'up');
    // The user's own files: the daemon reads the policy, keeps its state, and nothing else.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-paths-daemon-'));
    fs.chownSync(dir, NOBODY, NOBODY);
    config = path.join(dir, 'config.json');
    state = path.join(dir, 'state');
    fs.writeFileSync(config, JSON.stringify({ paths: { manager: 'kernel', interfaces: { pd0: 'use' } } }));
    fs.chownSync(config, NOBODY, NOBODY);
  });

  after(async () => {
    await Promise.all(running.map((r) => r.stop('SIGKILL', 1000)));
    await ns?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const daemon = async (caps: string[]): Promise<Running> => {
    const r = await startProcess(process.execPath, [CLI_PATH, 'paths', 'daemon', '-v', '--config', config, '--state-dir', state],
      { prefix: ['ip', 'netns', 'exec', ns.name, ...asNobody(caps)], ready: /^braid: managing MPTCP endpoints/m, timeoutMs: 15_000 });
    running.push(killOnSignal(r));
    return r;
  };
  const setPolicy = async (policy: string): Promise<void> => {
    const r = await runProcess(process.execPath, [CLI_PATH, 'paths', 'set', 'pd0', policy, '--config', config], { prefix: asNobody([]), timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
  };
  /** A wait that fails says what the daemon and `ip mptcp` showed at that moment. */
  const saying = async <T>(d: Running, wait: Promise<T>): Promise<T> => {
    try {
      return await wait;
    } catch (err) {
      const eps = await ipEndpoints(ns).catch((e: Error) => e.message);
      throw new Error(`${(err as Error).message}; endpoints ${JSON.stringify(eps)}; daemon ${d.alive() ? 'running' : 'exited'}, said: ${d.stderr() || '(nothing)'}`);
    }
  };
  const onPd0 = (flags: string[] | null) => async (): Promise<IpEndpoint[] | undefined> => {
    const e = (await ipEndpoints(ns)).filter((x) => x.dev === 'pd0');
    if (flags === null) return e.length === 0 ? e : undefined;
    const ok = e.length === 2 && [A4, A6].every((a) => e.some((x) => x.address === a)) && e.every((x) => flagsOf(x).join() === flags.join());
    return ok ? e : undefined;
  };

  test('it runs as that user with that one capability, follows the policy file, and removes its endpoints on SIGTERM', async () => {
    const limitsBefore = await ipLimits(ns);
    assert.deepEqual(await ipEndpoints(ns), []);
    const d = await daemon(['net_admin']);
    try {
      await followsPolicy(d, limitsBefore);
    } finally {
      // A failure above must not leave this daemon reconciling while the next test runs.
      if (d.alive()) await d.stop('SIGKILL', 2000);
    }
  });

  const followsPolicy = async (d: Running, limitsBefore: Awaited<ReturnType<typeof ipLimits>>): Promise<void> => {
    // The kernel's view of the process: nobody, CAP_NET_ADMIN (bit 12) and nothing else.
    const status = fs.readFileSync(`/proc/${d.child.pid}/status`, 'utf8');
    assert.match(status, new RegExp(`^Uid:\\s+${NOBODY}\\s+${NOBODY}\\s+${NOBODY}\\s+${NOBODY}$`, 'm'));
    assert.match(status, /^CapEff:\s+0+1000$/m);
    assert.match(status, /^CapBnd:\s+0+1000$/m);

    const made = await saying(d, until(onPd0(['subflow']), POLICY_MS, 'subflow endpoints for pd0'));
    const ids = made.value.map((e) => e.id).sort();
    // The limits are raised right after the endpoints are added: waited for, not raced.
    const raised = await saying(d, until(async () => {
      const l = await ipLimits(ns);
      return l.subflows === 2 && l.addAddrAccepted === 2 ? l : undefined;
    }, POLICY_MS, 'limits raised to 2 subflows, 2 accepted ADD_ADDR'));
    assert.deepEqual(raised.value, { subflows: 2, addAddrAccepted: 2 });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(d.alive(), true, `the daemon exited on its own, leaving its endpoints: ${d.stderr()}`);
    await setPolicy('backup');
    const backup = await saying(d, until(onPd0(['subflow', 'backup']), POLICY_MS, 'pd0 endpoints flagged backup'));
    assert.deepEqual(backup.value.map((e) => e.id).sort(), ids, 'backup changes the flags in place');
    await setPolicy('off');
    await saying(d, until(onPd0(null), POLICY_MS, 'pd0 endpoints removed for off'));
    await setPolicy('use');
    await saying(d, until(onPd0(['subflow']), POLICY_MS, 'pd0 endpoints back for use'));

    const exit = await d.stop('SIGTERM', 5000);
    assert.equal(exit.code, 0, d.stderr());
    assert.deepEqual(await ipEndpoints(ns), [], 'endpoints left behind after SIGTERM');
    assert.deepEqual(await ipLimits(ns), limitsBefore, 'limits not put back after SIGTERM');
    assert.match(d.stderr(), new RegExp(`paths: endpoint ${A4.replace(/\./g, '\\.')} id \\d+ removed`));
  };

  test('the same user without CAP_NET_ADMIN: nothing changes, and the log says why', async () => {
    const before = await ipEndpoints(ns);
    const limitsBefore = await ipLimits(ns);
    const d = await daemon([]);
    assert.match(fs.readFileSync(`/proc/${d.child.pid}/status`, 'utf8'), /^CapEff:\s+0+$/m);
    await saying(d, until(async () => (d.stderr().includes(PRIVILEGE_HELP) ? true : undefined), POLICY_MS, 'the privilege message'));
    await setPolicy('backup'); // a reconcile is asked for; it must still change nothing
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await ipEndpoints(ns), before);
    assert.deepEqual(await ipLimits(ns), limitsBefore);
    const exit = await d.stop('SIGTERM', 5000);
    assert.equal(exit.code, 0, d.stderr());
  });
});

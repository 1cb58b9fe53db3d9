// The path policy for an unprivileged Braid: `braid up` runs as an ordinary user (uid 65534, no
// capabilities) and `braid helper --paths-config` (root, as its systemd unit runs it) is the
// namespace's MPTCP path manager. The user's Braid picks each connection's first subflow itself
// (binding to a device needs no privilege) and sends the helper what its rules want for the
// connection's other subflows; the helper checks in the kernel's socket table that the connection
// is the caller's before it acts on it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { BRAID_CLI, curlDownload, missingPrerequisite, startByteServer } from './helpers/multipath-harness';
import { killOnSignal, until } from './helpers/paths-harness';
import { runProcess, startProcess, type Running } from './helpers/proc';
import { createPolicyTopology, type PolicyTopology } from './helpers/policy-topology';
import { requireFor } from './helpers/prerequisites';
import { cliForUser, NOBODY, repoForUser } from './helpers/as-user';

const skip = requireFor('the path policy for an unprivileged braid through braid helper (paths-policy-helper.test.ts)', skipUnlessRoot() ?? missingPrerequisite());
const PORT = 8080;
const MB = 1_000_000;

describe('the path policy for an unprivileged braid, through braid helper', { skip, timeout: 180_000 }, () => {
  let topo: PolicyTopology;
  let helper: Running;
  let braid: Running;
  let proxyPort = 0;
  const procs: NsProcess[] = [];
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-pph-'));
  const userHome = path.join(home, 'user');
  const socket = path.join(home, 'helper.sock');
  const rootConfig = path.join(home, 'root-config.json');

  const nsenter = (): string[] => ['nsenter', `--net=/run/netns/${topo.client.name}`];
  // A clone under a directory only root may enter (mktemp -d, as CI makes) is bind-mounted where the user can reach it.
  const repo = repoForUser();
  const USER_CLI = cliForUser(repo);
  const asUser = (argv: string[]): string[] => [...repo.prefix, 'setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all',
    'env', `HOME=${userHome}`, `BRAID_HELPER_SOCKET=${socket}`, `BRAID_STATE_DIR=${userHome}/state`, `BRAID_CONFIG=${userHome}/config.json`, ...argv];
  const counted = async <T>(fn: () => Promise<T>): Promise<{ result: T; wlan0: number; wwan0: number }> => {
    const a = [await topo.rx('wlan0'), await topo.rx('wwan0')];
    const result = await fn();
    return { result, wlan0: (await topo.rx('wlan0')) - a[0]!, wwan0: (await topo.rx('wwan0')) - a[1]! };
  };

  before(async () => {
    topo = await createPolicyTopology({ rateMbit: 20 });
    procs.push(await startByteServer(topo.server, { port: PORT }));
    // The helper's policy file: both links in use, for every connection in the namespace.
    fs.writeFileSync(rootConfig, JSON.stringify({ paths: { interfaces: { wlan0: 'use', wwan0: 'use' } } }));
    fs.mkdirSync(userHome, { recursive: true });
    fs.writeFileSync(path.join(userHome, 'config.json'), JSON.stringify({
      paths: { interfaces: { wlan0: 'use', wwan0: 'use' }, rules: [{ name: 'pin to wifi', match: { cidr: `${topo.dest}/32` }, paths: ['wifi'] }] },
      control: { enabled: false },
    }));
    fs.chmodSync(home, 0o755);
    fs.chownSync(userHome, NOBODY, NOBODY);
    fs.chownSync(path.join(userHome, 'config.json'), NOBODY, NOBODY);
    helper = killOnSignal(await startProcess(nsenter()[0]!, [...nsenter().slice(1), process.execPath, BRAID_CLI, 'helper', '-v', '--socket', socket,
      '--state-dir', path.join(home, 'root-state'), '--paths-config', rootConfig], { ready: /braid: helper listening on/, timeoutMs: 20_000 }));
    await until(async () => ((await topo.client.exec(['cat', '/proc/sys/net/mptcp/path_manager'])).stdout.trim() === 'userspace' ? true : undefined), 10_000, 'the helper becoming the path manager');
    braid = killOnSignal(await startProcess(nsenter()[0]!, [...nsenter().slice(1), ...asUser([process.execPath, USER_CLI, 'up', '-v', '--port', '0'])],
      { ready: /braid: proxy listening on 127\.0\.0\.1:(\d+)/, timeoutMs: 20_000 }));
    proxyPort = Number(braid.match![1]);
  });

  after(async () => {
    await braid?.stop('SIGTERM', 5000);
    await helper?.stop('SIGTERM', 5000);
    await Promise.all(procs.map((p) => p.stop()));
    await topo?.destroy();
    fs.rmSync(home, { recursive: true, force: true });
  });

  test('the user\'s rule reaches the helper\'s path manager: a pinned destination stays on WiFi, another uses both links', async (t) => {
    const pinned = await counted(() => curlDownload(topo.client, `http://${topo.dest}:${PORT}/bytes/${20 * MB}`, { socksPort: proxyPort, hash: true, maxSeconds: 60 }));
    const free = await counted(() => curlDownload(topo.client, `http://${topo.dest2}:${PORT}/bytes/${20 * MB}`, { socksPort: proxyPort, maxSeconds: 60 }));
    t.diagnostic(`pinned: wlan0 ${pinned.wlan0} B wwan0 ${pinned.wwan0} B; not pinned: wlan0 ${free.wlan0} B wwan0 ${free.wwan0} B`);
    assert.equal(pinned.result.bytes, 20 * MB);
    assert.ok(pinned.wlan0 / (pinned.wlan0 + pinned.wwan0) >= 0.99, 'the pinned destination was not kept on WiFi');
    assert.ok(free.wwan0 > 0.3 * 20 * MB && free.wlan0 > 0.3 * 20 * MB, 'the helper did not open subflows on both links for an unpinned connection');
    assert.doesNotMatch(braid.stderr(), /rules and secondary paths choose only the first subflow/);
  });

  test('the helper refuses to steer a connection that is not the caller\'s', async () => {
    // A connection of root's, slow enough to be there while we ask.
    const rootDl = topo.client.spawn(['mptcpize', 'run', 'curl', '-sS', '--limit-rate', '50k', '-o', '/dev/null', `http://${topo.dest}:${PORT}/bytes/${2 * MB}`], { label: 'root curl' });
    procs.push(rootDl);
    const port = (await until(async () => {
      const out = (await topo.client.exec(['ss', '-tnH', 'state', 'established', 'dst', topo.dest])).stdout;
      const m = /:(\d+)\s+198\.51\.100\.1:8080/.exec(out);
      return m ? Number(m[1]) : undefined;
    }, 5000, 'root\'s connection')).value;
    const ask = (localPort: number): Promise<{ stdout: Buffer }> => runProcess(nsenter()[0]!, [...nsenter().slice(1), ...asUser([process.execPath, '-e', `
      const s = require('net').connect(${JSON.stringify(socket)});
      s.on('connect', () => s.write(JSON.stringify({ id: 1, op: 'paths.connection', params: { token: 12345, localPort: ${localPort}, allowed: null, rule: null } }) + '\\n'));
      s.on('data', (d) => { process.stdout.write(d); s.destroy(); });
    `])], { timeoutMs: 10_000 });
    const theirs = JSON.parse((await ask(port)).stdout.toString()) as { ok: boolean; error: { code: string; message: string } };
    assert.equal(theirs.ok, false);
    assert.equal(theirs.error.code, 'EACCES');
    assert.match(theirs.error.message, /no connection of yours on local port \d+ \(it is uid 0's\)/);
    const none = JSON.parse((await ask(1)).stdout.toString()) as { ok: boolean; error: { code: string } };
    assert.equal(none.error.code, 'EACCES');
    rootDl.child.kill('SIGKILL');
  });
});

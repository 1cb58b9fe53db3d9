// Transparent mode for an unprivileged Braid (issue 13, "Privileges"): `braid up` runs as an
// ordinary user (uid 65534, no capabilities), and `braid helper` (root, as its systemd unit would
// run it) applies the rules for that user's traffic only. The user's cgroup is a delegated one, as a
// desktop session's is under user@UID.service. Checked with real curl as that user and as root, and
// with `nft` itself.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expectedSha256 } from './helpers/byte-stream';
import { requireFor } from './helpers/prerequisites';
import { skipUnlessRoot, Topology, type Namespace, type NsProcess } from './helpers/netns';
import { BRAID_CLI, DIST, missingPrerequisite } from './helpers/multipath-harness';
import { killOnSignal, until } from './helpers/paths-harness';
import { runProcess, startProcess, type Running } from './helpers/proc';
import { cliForUser, NOBODY, repoForUser } from './helpers/as-user';

const CGROUP2 = fs.existsSync('/sys/fs/cgroup/unified/cgroup.procs') ? '/sys/fs/cgroup/unified' : '/sys/fs/cgroup';
const skip = requireFor('transparent mode for an unprivileged braid through braid helper (transparent-helper.test.ts)', skipUnlessRoot() ?? missingPrerequisite()
  ?? (fs.existsSync('/usr/sbin/nft') ? undefined : 'needs nft (apt-get install nftables)')
  ?? (fs.existsSync(path.join(CGROUP2, 'cgroup.procs')) ? undefined : 'needs a cgroup v2 tree under /sys/fs/cgroup'));
const SERVE_BYTES = path.join(DIST, 'test', 'helpers', 'serve-bytes.js');

describe('transparent mode for an unprivileged braid, through braid helper', { skip, timeout: 120_000 }, () => {
  let topo: Topology;
  let client: Namespace;
  let server: Namespace;
  let serverAddr = '';
  let helper: Running;
  let braid: Running;
  const procs: NsProcess[] = [];
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-tph-'));
  const rootState = path.join(home, 'root-state');
  const userHome = path.join(home, 'user');
  const socket = path.join(home, 'helper.sock');
  const deleg = path.join(CGROUP2, `braid-test-deleg-${process.pid}`);

  const nsenter = (): string[] => ['nsenter', `--net=/run/netns/${client.name}`];
  const repo = repoForUser();
  const USER_CLI = cliForUser(repo);
  const asUser = (argv: string[]): string[] => [...repo.prefix, 'setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all',
    'env', `HOME=${userHome}`, `BRAID_HELPER_SOCKET=${socket}`, `BRAID_STATE_DIR=${userHome}/state`, `BRAID_CONFIG=${userHome}/config.json`, ...argv];
  const curl = async (user: boolean, bytes: number): Promise<{ code: number | null; out: string }> => {
    const argv = ['sh', '-c', `curl -sS --max-time 10 http://${serverAddr}:8080/bytes/${bytes} | sha256sum`];
    const r = await runProcess(nsenter()[0]!, [...nsenter().slice(1), ...(user ? asUser(argv) : argv)], { timeoutMs: 20_000 });
    return { code: r.code, out: r.stdout.toString().split(' ')[0]! };
  };
  const total = async (): Promise<number> => {
    const ep = JSON.parse(fs.readFileSync(path.join(userHome, 'state', 'control.json'), 'utf8')) as { host: string; port: number; token: string };
    const r = await client.exec(['curl', '-sS', '--max-time', '5', '-H', `Authorization: Bearer ${ep.token}`, '-X', 'POST', '--data', '{}', `http://${ep.host}:${ep.port}/api/status`]);
    return (JSON.parse(r.stdout) as { result: { connections: { total: number } } }).result.connections.total;
  };
  const table = async (): Promise<string> => (await client.exec(['nft', 'list', 'ruleset'])).stdout;
  const startUserBraid = async (): Promise<Running> => {
    // Into the delegated cgroup first (as a terminal's shell is), then drop to the user.
    const argv = ['sh', '-c', `echo $$ > ${deleg}/cgroup.procs && exec "$@"`, 'braid',
      ...asUser([process.execPath, USER_CLI, 'up', '-v', '--port', '0'])];
    return killOnSignal(await startProcess(nsenter()[0]!, [...nsenter().slice(1), ...argv], { ready: /braid: proxy listening on/, timeoutMs: 20_000 }));
  };

  before(async () => {
    topo = new Topology();
    client = await topo.addNamespace('hc');
    server = await topo.addNamespace('hs');
    const link = await topo.link(client, server);
    serverAddr = link.b.ipv4;
    await client.exec(['ip', 'route', 'add', 'default', 'via', link.b.ipv4]);
    const srv = server.spawn([process.execPath, SERVE_BYTES, '--port', '8080', '--tcp'], { label: 'server' });
    await srv.waitForLine(/^listening/, 15_000);
    procs.push(srv);
    // What a desktop session has: a cgroup of the user's own (systemd delegates user@UID.service).
    fs.mkdirSync(deleg);
    for (const f of ['', 'cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads']) fs.chownSync(path.join(deleg, f), NOBODY, NOBODY);
    fs.mkdirSync(userHome, { recursive: true });
    fs.writeFileSync(path.join(userHome, 'config.json'), JSON.stringify({
      transparent: { enabled: true, bypass: ['127.0.0.0/8', '::1/128'] },
      paths: { enabled: false },
      control: { enabled: true, host: '127.0.0.1', port: 0 },
    }));
    fs.chmodSync(home, 0o755);
    fs.chownSync(userHome, NOBODY, NOBODY);
    fs.chownSync(path.join(userHome, 'config.json'), NOBODY, NOBODY);
    helper = killOnSignal(await startProcess(nsenter()[0]!, [...nsenter().slice(1), process.execPath, BRAID_CLI, 'helper', '-v', '--socket', socket, '--state-dir', rootState],
      { ready: /braid: helper listening on/, timeoutMs: 20_000 }));
    braid = await startUserBraid();
  });

  after(async () => {
    await braid?.stop('SIGTERM', 5000);
    await helper?.stop('SIGTERM', 5000);
    await Promise.all(procs.map((p) => p.stop()));
    await topo?.destroy();
    // The user's Braid moves back out of its own cgroup on exit; after a kill it is left behind.
    for (const d of fs.existsSync(deleg) ? fs.readdirSync(deleg) : []) {
      if (d.startsWith('braid-self-')) fs.rmdirSync(path.join(deleg, d));
    }
    if (fs.existsSync(deleg)) fs.rmdirSync(deleg);
    fs.rmSync(home, { recursive: true, force: true });
  });

  test('the user\'s TCP goes through their braid; root\'s does not; the rules name the user and Braid\'s cgroup', async () => {
    await until(async () => (/table inet braid/.test(await table()) ? true : undefined), 5000, 'the helper applied the table');
    const rules = await table();
    assert.match(rules, new RegExp(`meta skuid ${NOBODY} jump nat_0`));
    assert.match(rules, /socket cgroupv2 level \d+ .* return/);
    assert.match(braid.stderr(), /transparent mode \(through the braid helper\)/);

    const before = await total();
    const mine = await curl(true, 1_000_000);
    assert.equal(mine.out, expectedSha256(1_000_000));
    assert.equal(await total(), before + 1, 'the user\'s connection went through their braid');
    const roots = await curl(false, 1_000_000);
    assert.equal(roots.out, expectedSha256(1_000_000));
    assert.equal(await total(), before + 1, 'root\'s connection must not be redirected');
  });

  test('braid run as the user, transparent mode off: only the program under braid run goes through braid', async () => {
    const ep = JSON.parse(fs.readFileSync(path.join(userHome, 'state', 'control.json'), 'utf8')) as { host: string; port: number; token: string };
    const call = async (command: string, params: unknown): Promise<void> => {
      const r = await client.exec(['curl', '-sS', '--max-time', '5', '-H', `Authorization: Bearer ${ep.token}`, '-X', 'POST', '--data', JSON.stringify(params), `http://${ep.host}:${ep.port}/api/${command}`]);
      assert.match(r.stdout, /"ok":true/, r.stdout);
    };
    await call('transparent.set', { enabled: false });
    await until(async () => (/table inet braid/.test(await table()) ? undefined : true), 3000, 'the user\'s rules removed');
    try {
      const before = await total();
      const argv = ['sh', '-c', `echo $$ > ${deleg}/cgroup.procs && exec "$@"`, 'run',
        ...asUser([process.execPath, USER_CLI, 'run', '--', 'sh', '-c', `curl -sS --max-time 10 http://${serverAddr}:8080/bytes/500000 | sha256sum`])];
      const r = await runProcess(nsenter()[0]!, [...nsenter().slice(1), ...argv], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString().split(' ')[0], expectedSha256(500_000));
      assert.equal(await total(), before + 1, 'the program under braid run went through braid (via the helper)');
      const plain = await curl(true, 100_000);
      assert.equal(plain.out, expectedSha256(100_000));
      assert.equal(await total(), before + 1, 'a program of the same user not under braid run is not redirected');
      assert.doesNotMatch(await table(), /table inet braid/, 'the scope\'s rule is gone with the program');
    } finally {
      await call('transparent.set', { enabled: true });
      await until(async () => (/table inet braid/.test(await table()) ? true : undefined), 5000, 'applied again');
    }
  });

  test('the helper refuses a cgroup holding another user\'s process, and a port that is not the caller\'s', async () => {
    // The caller (the user) asks from a cgroup of its own, once with a root process beside it.
    const shared = path.join(deleg, 'ask-shared');
    const alone = path.join(deleg, 'ask-alone');
    for (const d of [shared, alone]) {
      fs.mkdirSync(d);
      fs.chownSync(path.join(d, 'cgroup.procs'), NOBODY, NOBODY);
    }
    const rootSleeper = await startProcess('sh', ['-c', `echo $$ > ${shared}/cgroup.procs && exec sleep 30`]);
    const rootListener = await startProcess(nsenter()[0]!, [...nsenter().slice(1), process.execPath, '-e',
      "const s=require('net').createServer().listen(0,'127.0.0.1',()=>console.log('port',s.address().port))"], { ready: /port (\d+)/ });
    const rootPort = Number(rootListener.match![1]);
    const ask = async (cg: string, port: number): Promise<string> => {
      const script = `const s=require('net').connect(${JSON.stringify(socket)});s.on('data',d=>{process.stdout.write(d);s.end()});` +
        `s.write(JSON.stringify({id:1,op:'transparent.apply',params:{port:${port},ipv6:false,bypass:['127.0.0.0/8'],relay:[],everything:true,scopes:[],blockQuic:false,` +
        `self:{path:${JSON.stringify(path.relative('/sys/fs/cgroup', cg))},level:${path.relative(CGROUP2, cg).split('/').length}}}})+'\\n')`;
      const r = await runProcess(nsenter()[0]!, [...nsenter().slice(1), 'sh', '-c', `echo $$ > ${cg}/cgroup.procs && exec "$@"`, 'ask', ...asUser([process.execPath, '-e', script])], { timeoutMs: 10_000 });
      return r.stdout.toString();
    };
    try {
      assert.match(await ask(shared, rootPort), /"ok":false,"error":\{"code":"EACCES","message":"cgroup \S+ holds process \d+ of another user"/);
      assert.match(await ask(alone, rootPort), new RegExp(`"ok":false,"error":\\{"code":"EACCES","message":"127\\.0\\.0\\.1:${rootPort} is not a listener of yours \\(uid 0's\\)"`));
    } finally {
      await rootSleeper.stop('SIGKILL', 1000);
      await rootListener.stop('SIGKILL', 1000);
      await new Promise((r) => setTimeout(r, 200));
      for (const d of [shared, alone]) fs.rmdirSync(d);
    }
  });

  test('SIGKILL of the user\'s braid: the helper takes its rules out at once; SIGKILL of the helper: its guardian removes the table', async (t) => {
    braid.child.kill('SIGKILL');
    await braid.exited;
    const gone = await until(async () => (/table inet braid/.test(await table()) ? undefined : true), 3000, 'rules removed when the caller died');
    t.diagnostic(`rules gone ${gone.ms.toFixed(0)} ms after the user's braid was killed`);
    for (const d of fs.readdirSync(deleg)) if (d.startsWith('braid-self-')) fs.rmdirSync(path.join(deleg, d));

    braid = await startUserBraid();
    await until(async () => (/table inet braid/.test(await table()) ? true : undefined), 5000, 'applied again');
    helper.child.kill('SIGKILL');
    await helper.exited;
    const g2 = await until(async () => (/table inet braid/.test(await table()) ? undefined : true), 3000, 'table removed by the helper\'s guardian');
    t.diagnostic(`table gone ${g2.ms.toFixed(0)} ms after the helper was killed`);
    await until(async () => (/the braid helper closed the connection/.test(braid.stderr()) ? true : undefined), 3000, 'the user\'s braid says its helper went away');
  });
});

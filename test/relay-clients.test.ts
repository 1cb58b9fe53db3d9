/**
 * Real clients through `braid up --relay` in namespaces: curl in each of the proxy's three modes
 * (SOCKS5, plain-HTTP forwarding, CONNECT) and headless Chromium with `--proxy-server=http://…`
 * loading an http:// and an https:// page. The destination is reachable from the relay only
 * (see relay-topology.ts), so every byte a client gets came through the relay.
 *
 * Plain-HTTP forwarding is what a browser under the system proxy sends for every http:// URL; it
 * once hung through a relay while SOCKS5 and CONNECT worked (issue 11, point 1).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DestinationPolicy, explainRefusal } from '../electron/core/relay/policy';
import { expectedSha256 } from './helpers/byte-stream';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { DIST, missingPrerequisite } from './helpers/multipath-harness';
import { createRelayTopology, startRelay, startRelayClient, tempRelayDir, type RelayProcess, type RelayTopology } from './helpers/relay-topology';
import { makeSelfSignedCert, type Cert } from './helpers/servers';
import { CHROMIUM, killAllIn } from './helpers/ui-harness';

const SERVE_PAGES = path.join(DIST, 'test', 'helpers', 'serve-pages.js');
const RELAY_PORT = 8443;
const PROXY_PORT = 1080;
const DEST_HTTP = 8080;
const DEST_HTTPS = 8443;
const BYTES = 1_500_000;
/** As ui-driver.ts starts it: nothing but the page under test goes on the network. */
const CHROMIUM_QUIET = ['--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'];

function sha256File(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

test("the relay's policy names a stable reason for each refused range; the client explains it", () => {
  const policy = new DestinationPolicy({ allow: ['10.9.0.0/16'], deny: ['10.9.9.0/24', '203.0.113.0/24'] });
  const cases: Array<[string, string | null]> = [
    ['127.0.0.1', 'loopback'], ['::1', 'loopback'], ['10.1.2.3', 'private'], ['192.168.1.1', 'private'], ['fd00::1', 'private'],
    ['100.64.0.1', 'cgnat'], ['169.254.1.1', 'link-local'], ['fe80::1', 'link-local'], ['224.0.0.1', 'multicast'],
    ['ff02::1', 'multicast'], ['0.1.2.3', 'reserved'], ['240.0.0.1', 'reserved'],
    ['10.9.1.1', null], ['10.9.9.1', 'denied'], ['203.0.113.5', 'denied'], ['198.51.100.1', null],
  ];
  for (const [address, reason] of cases) assert.equal(policy.check(address)?.reason ?? null, reason, address);
  assert.equal(explainRefusal('private'), "refused by the relay's policy (private address); the relay's operator can allow it with --allow CIDR");
  assert.match(explainRefusal('denied'), /deny list.*--deny/);
  assert.doesNotMatch(explainRefusal('denied'), /--allow/, 'a denied range cannot be allowed');
  assert.match(explainRefusal(undefined), /^refused by the relay's policy; /);
});

describe('real clients through a relay: curl in every proxy mode, Chromium with --proxy-server', { skip: skipUnlessRoot() ?? missingPrerequisite(), timeout: 180_000 }, () => {
  let topo: RelayTopology;
  let relayDir: string;
  let relay: RelayProcess;
  let client: NsProcess;
  let dest: NsProcess;
  let cert: Cert;
  let scratch: string;
  const marker = crypto.randomBytes(6).toString('hex');
  const destHost = (): string => topo.destAddress(4);

  /** curl in the client namespace; the body goes to a file that the caller hashes. */
  async function curl(args: string[], maxSeconds = 20): Promise<{ code: number | null; stderr: string; out: string; http: string }> {
    const out = path.join(scratch, `body-${crypto.randomBytes(4).toString('hex')}`);
    const r = await topo.client.exec(['curl', '-sS', '--max-time', String(maxSeconds), '-o', out, '-w', '%{http_code}', ...args],
      { allowFailure: true, timeoutMs: (maxSeconds + 5) * 1000 });
    return { code: r.code, stderr: r.stderr, out, http: r.stdout.trim() };
  }

  before(async () => {
    topo = await createRelayTopology({ rateMbit: 20 });
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-relay-clients-'));
    cert = makeSelfSignedCert();
    dest = topo.dest.spawn([process.execPath, SERVE_PAGES, '--http', String(DEST_HTTP), '--https', String(DEST_HTTPS),
      '--cert', cert.certFile, '--key', cert.keyFile, '--marker', marker], { label: 'serve-pages' });
    await dest.waitForLine(/^listening /, 15_000);
    relayDir = tempRelayDir();
    relay = await startRelay(topo, { port: RELAY_PORT, dir: relayDir });
    client = await startRelayClient(topo.client, { port: PROXY_PORT, link: relay.link, extra: ['--control', 'off'] });
  });

  after(async () => {
    if (topo) await killAllIn(topo.client);
    await topo?.destroy();
    for (const d of [relayDir, scratch, cert?.dir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  test('the destination answers the relay, not the client', async () => {
    const direct = await curl([`http://${destHost()}:${DEST_HTTP}/`], 3);
    assert.notEqual(direct.code, 0, 'the client reached the destination without the relay');
  });

  test('curl: SOCKS5, plain-HTTP forwarding and CONNECT through the relay, content intact', async () => {
    const url = `http://${destHost()}:${DEST_HTTP}/bytes/${BYTES}`;
    const modes: Array<[string, string[]]> = [
      ['SOCKS5', ['--socks5-hostname', `127.0.0.1:${PROXY_PORT}`, url]],
      ['HTTP forward', ['-x', `http://127.0.0.1:${PROXY_PORT}`, url]],
      ['CONNECT', ['-x', `http://127.0.0.1:${PROXY_PORT}`, '--proxytunnel', url]],
      ['CONNECT to https', ['-x', `http://127.0.0.1:${PROXY_PORT}`, '-k', `https://${destHost()}:${DEST_HTTPS}/bytes/${BYTES}`]],
    ];
    for (const [mode, args] of modes) {
      const r = await curl(args);
      assert.equal(r.code, 0, `${mode}: curl failed: ${r.stderr}\nbraid up: ${client.stderr}`);
      assert.equal(r.http, '200', mode);
      assert.equal(sha256File(r.out), expectedSha256(BYTES), `${mode}: content differs`);
    }
  });

  test('plain-HTTP forwarding reuses its relay tunnel for keep-alive requests', async () => {
    const url = (n: number): string => `http://${destHost()}:${DEST_HTTP}/bytes/${n}`;
    const outs = [path.join(scratch, 'ka1'), path.join(scratch, 'ka2'), path.join(scratch, 'ka3')];
    const sizes = [200_000, 1, 700_000];
    const from = dest.lines.length;
    const r = await topo.client.exec(['curl', '-sS', '--max-time', '20', '-x', `http://127.0.0.1:${PROXY_PORT}`,
      ...sizes.flatMap((n, i) => ['-o', outs[i]!, url(n)])], { allowFailure: true, timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    sizes.forEach((n, i) => assert.equal(sha256File(outs[i]!), expectedSha256(n), `request ${i + 1} differs`));
    assert.equal(dest.lines.slice(from).filter((l) => l.startsWith('GET http /bytes/')).length, 3);
  });

  test('Chromium with --proxy-server=http://… loads an http:// and an https:// page through the relay', { skip: fs.existsSync(CHROMIUM) ? undefined : `needs Chromium at ${CHROMIUM}` }, async () => {
    for (const [scheme, port] of [['http', DEST_HTTP], ['https', DEST_HTTPS]] as const) {
      const profile = fs.mkdtempSync(path.join(scratch, 'profile-'));
      const r = await topo.client.exec([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', ...CHROMIUM_QUIET,
        `--user-data-dir=${profile}`, `--proxy-server=http://127.0.0.1:${PROXY_PORT}`, '--ignore-certificate-errors',
        '--dump-dom', `${scheme}://${destHost()}:${port}/`], { allowFailure: true, timeoutMs: 45_000 });
      assert.match(r.stdout, new RegExp(`<p id="m">${scheme} page ${marker}</p>`), `${scheme}:// page not loaded (exit ${r.code}): ${r.stdout.slice(0, 500)} ${r.stderr.slice(-1500)}`);
    }
  });

  test("a destination the relay's policy refuses: the client is told why and what the relay's operator can do", async () => {
    const reasons: Array<[string, string]> = [['127.0.0.1', 'loopback address'], [topo.clientAddress(1), 'private address']];
    for (const [host, text] of reasons) {
      const url = `http://${host}:${DEST_HTTP}/`;
      for (const mode of ['HTTP forward', 'CONNECT']) {
        const r = await curl(['-x', `http://127.0.0.1:${PROXY_PORT}`, ...(mode === 'CONNECT' ? ['--proxytunnel', '-w', ' %{http_connect}'] : []), url], 10);
        const status = mode === 'CONNECT' ? r.http.split(' ').pop() : r.http;
        assert.equal(status, '403', `${mode} ${host}: ${r.http} ${r.stderr}`);
        if (mode === 'HTTP forward') {
          const body = fs.readFileSync(r.out, 'utf8');
          assert.ok(body.includes(`refused by the relay's policy (${text}); the relay's operator can allow it with --allow CIDR`), `${host}: ${body}`);
          assert.match(body, /EPOLICY/);
        }
      }
      // SOCKS5 has no text, only the reply code: 0x02, "connection not allowed by ruleset".
      const socks = await curl(['--socks5-hostname', `127.0.0.1:${PROXY_PORT}`, url], 10);
      assert.notEqual(socks.code, 0);
      assert.match(socks.stderr, /\(2\)|not allowed/i, `SOCKS reply for ${host}: ${socks.stderr}`);
      // braid up's own log says it once per destination, without -v.
      const logged = client.stderr.split('\n').filter((l) => l.includes(`${host}:${DEST_HTTP}: refused by the relay's policy (${text})`));
      assert.equal(logged.length, 1, `braid up's log: ${client.stderr}`);
    }
    // A name the relay resolves to a refused address gets the same explanation.
    const byName = await curl(['-x', `http://127.0.0.1:${PROXY_PORT}`, `http://localhost:${DEST_HTTP}/`], 10);
    assert.equal(byName.http, '403', byName.stderr);
    assert.match(fs.readFileSync(byName.out, 'utf8'), /refused by the relay's policy \(loopback address\)/);
    assert.match(relay.proc.stderr, /refused destination: 127\.0\.0\.1 is a loopback address/);
  });
});

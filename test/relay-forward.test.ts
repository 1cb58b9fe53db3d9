/**
 * Plain http:// forwarding (an HTTP proxy client, no CONNECT) through `braid up --relay`: the
 * relay's connection is handed over paused, and the forwarding code must start reading it. The soak
 * found every such request hanging until its client gave up; SOCKS5 and CONNECT, which go through
 * the byte pump, were fine. Checked with curl, content by SHA-256, in the relay topology.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { expectedSha256 } from './helpers/byte-stream';
import { DIST, missingPrerequisite } from './helpers/multipath-harness';
import { skipUnlessRoot } from './helpers/netns';
import './helpers/proc'; // throwaway config and state directories for every Braid started here
import { createRelayTopology, startRelay, startRelayClient, tempRelayDir, type RelayTopology } from './helpers/relay-topology';
import { sha256 } from './helpers/servers';

const ORIGIN = path.join(DIST, 'test', 'soak', 'soak-origin.js');
const PROXY_PORT = 1080;
const SIZES = [1, 100_000, 3_000_000];

describe('http:// forwarding through a relay', { skip: skipUnlessRoot() ?? missingPrerequisite(), timeout: 120_000 }, () => {
  let topo: RelayTopology;
  let relayDir: string;
  let tmp: string;

  before(async () => {
    topo = await createRelayTopology({ rateMbit: null });
    relayDir = tempRelayDir();
    tmp = fs.mkdtempSync(path.join(process.env.BRAID_TEST_HOME!, 'fwd-'));
    const origin = topo.dest.spawn([process.execPath, ORIGIN, '--port', '8080', '--tcp'], { label: 'origin' });
    await origin.waitForLine(/^listening/, 15_000);
    const relay = await startRelay(topo, { port: 8443, dir: relayDir });
    await startRelayClient(topo.client, { port: PROXY_PORT, link: relay.link, extra: ['--control', 'off'] });
  });

  after(async () => {
    await topo?.destroy();
    if (relayDir) fs.rmSync(relayDir, { recursive: true, force: true });
  });

  test('GET http://… via the proxy as an HTTP proxy arrives intact, one request after another on a kept-alive connection', async () => {
    const urls = SIZES.map((n) => `http://${topo.destAddress()}:8080/bytes/${n}`);
    const outs = SIZES.map((n) => path.join(tmp, `body-${n}`));
    // One curl, three URLs: kept alive between them, so the relay connection is reused or replaced.
    const r = await topo.client.exec(['curl', '-sS', '--max-time', '10', '-x', `http://127.0.0.1:${PROXY_PORT}`, '-w', '%{http_code} ',
      ...urls.flatMap((u, i) => ['-o', outs[i]!, u])], { allowFailure: true, timeoutMs: 20_000 });
    assert.equal(r.code, 0, `curl failed (${r.code}): ${r.stderr}`);
    assert.equal(r.stdout.trim(), '200 200 200');
    SIZES.forEach((n, i) => assert.equal(sha256(fs.readFileSync(outs[i]!)), expectedSha256(n, 'soak'), `${n} bytes: content differs`));
  });
});

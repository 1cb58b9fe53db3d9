/**
 * Two `braid relay`s on one host (one namespace), both with the default metrics address: the
 * second cannot bind 127.0.0.1:9464, which must cost it its metrics only (a warning naming
 * --metrics), never its service (issue 12, point 3).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseRelayLink } from '../electron/core/relay/share-link';
import { expectedSha256 } from './helpers/byte-stream';
import { skipUnlessRoot, Topology, type Namespace, type NsProcess } from './helpers/netns';
import { BRAID_CLI, missingPrerequisite, startByteServer } from './helpers/multipath-harness';
import { runBraid } from './helpers/proc';

const DEST_PORT = 8080;
const RELAY_PORTS = [8443, 8444];

describe('two relays side by side on one host', { skip: skipUnlessRoot() ?? missingPrerequisite(), timeout: 60_000 }, () => {
  let topology: Topology;
  let ns: Namespace;
  let scratch: string;
  const relays: NsProcess[] = [];
  const links: string[] = [];

  before(async () => {
    topology = new Topology();
    ns = await topology.addNamespace('m');
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-relays-'));
    await startByteServer(ns, { port: DEST_PORT, tcp: true });
    for (const [i, port] of RELAY_PORTS.entries()) {
      // No --metrics: both want the default 127.0.0.1:9464.
      const proc = ns.spawn([process.execPath, BRAID_CLI, 'relay', '--listen', `127.0.0.1:${port}`, '--allow', '127.0.0.0/8',
        '--dir', path.join(scratch, `r${i}`)], { label: `braid relay ${i + 1}` });
      const { line } = await proc.waitForLine(/^braid: share link: /, 15_000);
      relays.push(proc);
      links.push(line.slice('braid: share link: '.length).trim());
    }
  });

  after(async () => {
    await topology?.destroy();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('the second relay warns that its metrics are off, naming the flag, and keeps running', async () => {
    // stderr is a separate pipe: the warning may arrive after the share link on stdout.
    for (let i = 0; i < 50 && !/metrics not served/.test(relays[1]!.stderr); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(relays[0]!.lines.includes('braid: metrics on http://127.0.0.1:9464/metrics'), relays[0]!.lines.join('\n'));
    assert.ok(!relays[1]!.lines.some((l) => l.startsWith('braid: metrics on')), relays[1]!.lines.join('\n'));
    assert.match(relays[1]!.stderr, /warning: metrics not served: cannot listen on 127\.0\.0\.1:9464: the address is in use.*--metrics HOST:PORT, or --metrics off/);
    for (const r of relays) assert.equal(r.running, true, r.stderr);
  });

  test('both relays serve a CONNECT', async () => {
    const n = 300_000;
    for (const [i, port] of RELAY_PORTS.entries()) {
      const { secret } = parseRelayLink(links[i]!);
      const out = path.join(scratch, `body${i}`);
      const r = await ns.exec(['curl', '-sS', '--max-time', '10', '--proxy', `https://127.0.0.1:${port}`, '--proxy-insecure', '--proxytunnel',
        '--proxy-user', `braid:${secret}`, '-o', out, `http://127.0.0.1:${DEST_PORT}/bytes/${n}`], { allowFailure: true, timeoutMs: 20_000 });
      assert.equal(r.code, 0, `relay ${i + 1}: ${r.stderr} ${relays[i]!.stderr}`);
      assert.equal(crypto.createHash('sha256').update(fs.readFileSync(out)).digest('hex'), expectedSha256(n), `relay ${i + 1}`);
    }
  });

  test('braid relay --help says what happens when the metrics address is taken', async () => {
    const r = await runBraid(['relay', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout.toString(), /--metrics HOST:PORT[\s\S]*cannot be\s+bound[\s\S]*warns and serves without metrics/);
  });
});

/**
 * Per-destination rules edited in the dashboard, in headless Chromium against `braid up` in a
 * two-link topology (eth0 holds the preferred default route, wwan0 the other; both in use):
 *
 * - a rule added with the editor is saved in the config file, lists in the Rules panel, and the
 *   next connection it matches runs on the path it names only (the interface counters say so),
 *   its row naming the rule;
 * - a bad value is refused next to the editor, naming the field, and nothing is saved;
 * - removing the rule in the dashboard lets the next connection use both paths again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { missingPrerequisite, startByteServer } from './helpers/multipath-harness';
import { startBraid, type BraidProxy } from './helpers/proc';
import { createUiTopology, killAllIn, missingBrowser, poll, UiDriver, type UiTopology } from './helpers/ui-harness';
import { requireFor } from './helpers/prerequisites';

const skip = requireFor('rules edited in the dashboard (paths-rules-ui.test.ts)', skipUnlessRoot() ?? missingPrerequisite() ?? missingBrowser());
const PROXY_PORT = 1080;
const CONTROL_PORT = 9797;
const PORT = 8080;
const DEST = '198.51.100.20';
const BYTES = 10_000_000;
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'paths-rules-ui');

describe('rules edited in the dashboard', { skip, timeout: 180_000 }, () => {
  let topo: UiTopology;
  let braid: BraidProxy;
  let ui: UiDriver;
  let scratch: string;
  let config: string;
  const servers: NsProcess[] = [];

  const rx = async (dev: string): Promise<number> => Number((await topo.client.exec(['cat', `/sys/class/net/${dev}/statistics/rx_bytes`])).stdout.trim());
  const download = async (): Promise<{ eth0: number; wwan0: number; rule: string | null }> => {
    const [a, b] = [await rx('eth0'), await rx('wwan0')];
    const p = topo.client.spawn(['curl', '-sS', '--max-time', '60', '--socks5-hostname', `127.0.0.1:${PROXY_PORT}`, '-o', '/dev/null', `http://${DEST}:${PORT}/bytes/${BYTES}`], { label: 'curl' });
    // The row's rule, read from the page while the download runs.
    const rule = await ui.request<string | null>('waitFor', { expr: `(() => { const r = document.querySelector('tr[data-destination="${DEST}:${PORT}"]'); return r ? (r.querySelector('[data-rule]')?.dataset.rule ?? 'none') : null; })()`, timeoutMs: 15_000 });
    const { code } = await p.exited;
    assert.equal(code, 0, 'curl failed');
    return { eth0: (await rx('eth0')) - a, wwan0: (await rx('wwan0')) - b, rule: rule === 'none' ? null : rule };
  };
  const savedRules = (): unknown[] => (JSON.parse(fs.readFileSync(config, 'utf8')) as { paths?: { rules?: unknown[] } }).paths?.rules ?? [];

  before(async () => {
    topo = await createUiTopology({ rateMbit: 20 });
    await topo.client.exec(['ip', 'route', 'add', 'default', 'via', topo.serverAddress(1), 'dev', 'eth0', 'metric', '100']);
    await topo.client.exec(['ip', 'route', 'add', 'default', 'via', topo.serverAddress(2), 'dev', 'wwan0', 'metric', '200']);
    await topo.server.exec(['ip', 'addr', 'add', `${DEST}/32`, 'dev', 'lo']);
    servers.push(await startByteServer(topo.server, { port: PORT }));
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-rules-ui-'));
    config = path.join(scratch, 'config.json');
    fs.writeFileSync(config, JSON.stringify({
      proxy: { host: '127.0.0.1', port: PROXY_PORT },
      paths: { interfaces: { eth0: 'use', wwan0: 'use' } },
      control: { host: '127.0.0.1', port: CONTROL_PORT, token: `rules-ui-${process.pid}-${Date.now()}` },
    }));
    braid = await startBraid(['up', '--config', config, '--state-dir', path.join(scratch, 'state')], { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 });
    const dashboard = await poll(async () => /dashboard: (http:\/\/\S+#token=\S+)\)/.exec(braid.stdout())?.[1], 10_000, 'the dashboard link');
    ui = new UiDriver(topo.client);
    await ui.request('open', { url: dashboard, width: 1600, height: 1200, colorScheme: 'light' });
    await ui.request('waitFor', { expr: `document.querySelectorAll('article[data-interface]').length >= 2` });
  });

  after(async () => {
    await ui?.quit().catch(() => {});
    await braid?.stop();
    for (const s of servers) await s.stop();
    if (topo) await killAllIn(topo.client);
    await topo?.destroy();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('a rule added in the dashboard is saved and pins the next matching connection to its path', async (t) => {
    const before = await download();
    t.diagnostic(`no rule: eth0 ${before.eth0} B, wwan0 ${before.wwan0} B`);
    assert.ok(before.eth0 > 0.3 * BYTES && before.wwan0 > 0.3 * BYTES, 'without a rule both paths carry');
    assert.equal(before.rule, null);

    const added = await ui.request<{ rules: string[]; problem: string | null }>('addRule', { name: 'cellular only', kind: 'port', value: String(PORT), paths: ['cellular'], backup: [] });
    assert.equal(added.problem, null);
    assert.deepEqual(added.rules, ['cellular only']);
    assert.deepEqual(savedRules(), [{ name: 'cellular only', match: { port: PORT }, paths: ['cellular'], backup: [] }]);
    await ui.request('screenshot', { path: path.join(ARTIFACTS, 'rules-1600x1200-light.png'), fullPage: true });

    const pinned = await download();
    t.diagnostic(`rule "cellular only": eth0 ${pinned.eth0} B, wwan0 ${pinned.wwan0} B`);
    assert.equal(pinned.rule, 'cellular only', 'the connection row names its rule');
    assert.ok(pinned.wwan0 / (pinned.eth0 + pinned.wwan0) >= 0.99, `the rule's path carried only ${pinned.wwan0} of ${pinned.eth0 + pinned.wwan0} bytes`);
  });

  test('a bad value is refused next to the editor, naming the field; nothing is saved', async () => {
    const r = await ui.request<{ rules: string[]; problem: string | null }>('addRule', { name: 'bad', kind: 'cidr', value: '10.0.0.0/99', paths: ['wifi'], backup: [] });
    assert.match(r.problem ?? '', /rules\[1\]\.match\.cidr/);
    assert.match(r.problem ?? '', /prefix must be at most 32/);
    assert.deepEqual(r.rules, ['cellular only']);
    assert.equal(savedRules().length, 1);
  });

  test('removing the rule in the dashboard lets the next connection use both paths', async () => {
    assert.deepEqual(await ui.request<string[]>('removeRule', { name: 'cellular only' }), []);
    assert.deepEqual(savedRules(), []);
    const free = await download();
    assert.equal(free.rule, null);
    assert.ok(free.eth0 > 0.3 * BYTES && free.wwan0 > 0.3 * BYTES, 'both paths carry again');
  });
});

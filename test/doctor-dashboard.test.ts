/**
 * The dashboard's Diagnose panel in headless Chromium, against `braid up` with a relay in
 * namespaces where a middlebox on eth0's link strips MPTCP (nftables in the relay's namespace):
 * the button runs the diagnosis, progress shows while it runs, and the stripped path's finding is
 * shown under eth0 while wwan0's MPTCP check passes. The same result reaches `braid status` (what
 * the tray's tooltip reads).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { StatusView } from '../electron/core/contract';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { BRAID_CLI, missingPrerequisite } from './helpers/multipath-harness';
import { startBraid, type BraidProxy } from './helpers/proc';
import { missingNft } from './helpers/prerequisites';
import { tempRelayDir } from './helpers/relay-topology';
import { createUiTopology, killAllIn, missingBrowser, poll, UiDriver, type UiTopology } from './helpers/ui-harness';

const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'doctor-dashboard');
const RELAY_PORT = 8443;
const CONTROL_PORT = 9797;
const skip = skipUnlessRoot() ?? missingPrerequisite() ?? missingBrowser()
  ?? missingNft('for the middlebox');

interface PanelFinding { check: string; status: string; subject: string; text: string }
interface Panel { verdict: string | null; progress: boolean; findings: PanelFinding[] }

const READ_PANEL = `(() => {
  const p = document.querySelector('.diagnose');
  if (!p) return null;
  return {
    verdict: p.querySelector('.verdict')?.innerText ?? null,
    progress: !!p.querySelector('[role=status] progress'),
    findings: [...p.querySelectorAll('li.finding')].map((li) => ({
      check: li.dataset.check, status: li.dataset.status, subject: li.closest('.group')?.dataset.subject ?? '', text: li.innerText,
    })),
  };
})()`;

/** Installs an observer that notes the Diagnose panel's progress element if it ever appears (returns true). */
const WATCH_PROGRESS = `(() => {
  window.__sawProgress = false;
  const look = () => { if (document.querySelector('.diagnose [role=status] progress')) window.__sawProgress = true; };
  new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true });
  return true;
})()`;
const SAW_PROGRESS = `window.__sawProgress === true || document.querySelector('.diagnose [role=status] progress') !== null`;

describe('the Diagnose panel', { skip, timeout: 180_000 }, () => {
  let topo: UiTopology;
  let braid: BraidProxy;
  let ui: UiDriver;
  let relay: NsProcess;
  let scratch: string;
  let relayDir: string;

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    topo = await createUiTopology({ rateMbit: 20 });
    relayDir = tempRelayDir();
    relay = topo.server.spawn([process.execPath, BRAID_CLI, 'relay', '--listen', `[::]:${RELAY_PORT}`, '--dir', relayDir,
      '--metrics', 'off', '--public-host', topo.serverAddress(1)], { label: 'braid relay' });
    const link = (await relay.waitForLine(/^braid: share link: /, 15_000)).line.slice('braid: share link: '.length).trim();
    // A middlebox on eth0's link that strips MPTCP, in the relay's namespace, on that link only.
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-doctor-ui-'));
    const rules = path.join(scratch, 'strip.nft');
    fs.writeFileSync(rules, `table inet braid_doctor_ui {\n chain in {\n  type filter hook input priority -150;\n  iifname "${topo.l1.b.dev}" tcp option mptcp exists reset tcp option mptcp\n }\n}\n`);
    await topo.server.exec(['nft', '-f', rules]);
    const config = path.join(scratch, 'config.json');
    fs.writeFileSync(config, JSON.stringify({
      proxy: { host: '127.0.0.1', port: 1080, dial: 'mptcp' },
      relay: { link },
      paths: { interfaces: { [topo.ifname[1]]: 'use', [topo.ifname[2]]: 'use' } },
      control: { host: '127.0.0.1', port: CONTROL_PORT, token: `doctor-ui-${process.pid}-${Date.now()}` },
    }));
    braid = await startBraid(['up', '--config', config, '--state-dir', path.join(scratch, 'state')], {
      prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000,
    });
    const dashboard = await poll(async () => /dashboard: (http:\/\/\S+#token=\S+)\)/.exec(braid.stdout())?.[1], 10_000, 'braid up printing its dashboard link');
    ui = new UiDriver(topo.client);
    await ui.request('open', { url: dashboard, width: 1600, height: 1200, colorScheme: 'light' });
    await ui.request('waitFor', { expr: `document.querySelector('.link')?.textContent?.trim() === 'connected'`, timeoutMs: 10_000 });
  });

  after(async () => {
    await ui?.quit().catch(() => {});
    await braid?.stop();
    await relay?.stop();
    if (topo) await killAllIn(topo.client);
    await topo?.destroy();
    for (const d of [scratch, relayDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  test('Diagnose shows progress, then the stripped path by name under eth0; wwan0 passes; braid status carries it for the tray', async () => {
    const [eth0, wwan0] = [topo.ifname[1], topo.ifname[2]];
    const before = await ui.request<Panel>('waitFor', { expr: READ_PANEL });
    assert.deepEqual(before.findings, [], 'findings before any diagnosis');
    await ui.request('waitFor', { expr: WATCH_PROGRESS });
    await ui.request('clickButton', { name: 'Diagnose' });
    // A run can be over in a quarter of a second, quicker than a poll may look: an observer notes
    // the progress element whenever it appears.
    await ui.request('waitFor', { expr: SAW_PROGRESS, timeoutMs: 5000 });
    await ui.request('screenshot', { path: path.join(ARTIFACTS, 'diagnose-running-1600x1200-light.png') }).catch(() => {});
    const done = await ui.request<Panel>('waitFor', { expr: `(() => { const v = ${READ_PANEL}; return v && v.verdict ? v : null; })()`, timeoutMs: 60_000 }, 70_000);
    const strip = done.findings.find((f) => f.check === 'path.mptcp' && f.subject === eth0);
    assert.ok(strip, `no MPTCP finding under ${eth0}: ${JSON.stringify(done.findings)}`);
    assert.equal(strip.status, 'fail');
    assert.match(strip.text, new RegExp(`middlebox on ${eth0} strips MPTCP`));
    assert.match(strip.text, /Fix:/);
    assert.equal(done.findings.find((f) => f.check === 'path.mptcp' && f.subject === wwan0)?.status, 'ok');
    assert.match(done.verdict ?? '', /problems? keeps? Braid from using every path/);
    await ui.request('screenshot', { path: path.join(ARTIFACTS, 'diagnose-stripped-1600x1200-light.png'), fullPage: true }).catch(() => {});
    assert.deepEqual((await ui.request<string[]>('console')).filter((l) => !/favicon/.test(l)), []);

    const r = await topo.client.exec([process.execPath, BRAID_CLI, 'status', '--json', '--state-dir', path.join(scratch, 'state')]);
    const status = JSON.parse(r.stdout) as StatusView;
    assert.equal(status.doctor?.ok, false);
    assert.ok(status.doctor!.failing >= 1);
    assert.equal(status.doctor!.firstFailing?.status, 'fail');
  });

  test('with the speed test: a bar per path, their sum, and together', async () => {
    const [eth0, wwan0] = [topo.ifname[1], topo.ifname[2]];
    await ui.request('clickButton', { role: 'checkbox', name: 'Speed test' });
    await ui.request('waitFor', { expr: WATCH_PROGRESS });
    await ui.request('clickButton', { name: 'Diagnose' });
    await ui.request('waitFor', { expr: SAW_PROGRESS, timeoutMs: 5000 });
    const rows = await ui.request<Record<string, { text: string; widths: number[] }>>('waitFor', {
      timeoutMs: 90_000,
      expr: `(() => {
        if (document.querySelector('.diagnose [role=status] progress')) return null;
        const rows = [...document.querySelectorAll('.diagnose tr[data-speed]')];
        if (rows.length === 0) return null;
        return Object.fromEntries(rows.map((tr) => [tr.dataset.speed, {
          text: tr.innerText, widths: [...tr.querySelectorAll('.bar span')].map((b) => b.getBoundingClientRect().width),
        }]));
      })()`,
    }, 120_000);
    assert.deepEqual(Object.keys(rows).sort(), ['all', eth0, 'sum', wwan0].sort());
    for (const k of [eth0, wwan0]) {
      const rates = [...rows[k].text.matchAll(/(\d+\.\d) Mbit\/s/g)].map((m) => Number(m[1]));
      assert.equal(rates.length, 2, rows[k].text);
      for (const v of rates) assert.ok(v > 15 && v < 22, `${k}: ${rows[k].text}`);
      assert.ok(rows[k].widths.every((w) => w > 10), `${k}'s bars are not drawn: ${rows[k].widths}`);
    }
    // MPTCP is stripped on eth0, where every connection starts: together is one path's worth, half the sum's bar.
    assert.ok(rows.all.widths[0] < 0.7 * rows.sum.widths[0], `together ${rows.all.widths[0]} px against the sum's ${rows.sum.widths[0]} px`);
    await ui.request('screenshot', { path: path.join(ARTIFACTS, 'diagnose-speed-1600x1200-light.png'), fullPage: true }).catch(() => {});
  });
});

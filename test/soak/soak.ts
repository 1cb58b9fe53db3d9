/**
 * `npm run soak [-- --minutes N]`: Braid under a long, mixed, hostile load, as root, in namespaces.
 *
 *   soak clients ─┬─ braid up (direct)  ─┐                            relay ns: MPTCP origin,
 *   (client ns)   └─ braid up --relay ───┴─ link 1 + link 2 (tbf) ─ braid relay ─ link 3 ─ dest ns: TCP origin
 *
 * 200 workers (default) open and close connections continuously, a third through the relay: SOCKS5,
 * HTTP forwarding and CONNECT, 1 KB to 20 MB, some aborted part way; every completed body is
 * checked by SHA-256. Link 2 goes down for 10 s every 60 s, and the relay is restarted once.
 *
 * Pass: no process crashed; no completed transfer was corrupt; RSS and open descriptors of every
 * Braid process flat (the median of the last minute at most 5 % above the median of the minute
 * from minute 5, or a third of the run if shorter); after the relay restart a new connection
 * through it works within 2 s. Prints a table per minute and writes everything as JSON (the path is
 * printed). Exit status 0 when it passes.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import '../helpers/proc'; // throwaway config and state directories for every Braid started here
import { BRAID_CLI, DIST, missingPrerequisite } from '../helpers/multipath-harness';
import { skipUnlessRoot, type NsProcess } from '../helpers/netns';
import { createRelayTopology, startRelay, startRelayClient, tempRelayDir, type RelayProcess, type RelayTopology } from '../helpers/relay-topology';
import { clockTicks, cpuTicks } from '../bench/cpu';
import type { SoakCounts } from './soak-clients';

const ORIGIN = path.join(DIST, 'test', 'soak', 'soak-origin.js');
const CLIENTS = path.join(DIST, 'test', 'soak', 'soak-clients.js');
const ORIGIN_PORT = 8080;
const RELAY_PORT = 8443;
const DIRECT_PROXY = 1080;
const RELAY_PROXY = 1081;
const SAMPLE_MS = 10_000;
const FLAP_EVERY_MS = 60_000;
const FLAP_DOWN_MS = 10_000;
const GROWTH_LIMIT = 0.05;
const RECOVERY_LIMIT_MS = 2000;

interface Args { minutes: number; workers: number; rateMbit: number; relayShare: number; flaps: boolean }

function parseArgs(argv: string[]): Args {
  const get = (k: string): string | undefined => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const a = { minutes: Number(get('--minutes') ?? 30), workers: Number(get('--workers') ?? 200), rateMbit: Number(get('--rate-mbit') ?? 100), relayShare: Number(get('--relay-share') ?? 1 / 3), flaps: !argv.includes('--no-flaps') };
  if (!(a.relayShare > 0 && a.relayShare < 1)) throw new Error('--relay-share: between 0 and 1');
  if (!(a.minutes >= 1 && a.minutes <= 24 * 60)) throw new Error('--minutes: 1..1440');
  if (!(a.workers >= 3 && a.workers <= 1000)) throw new Error('--workers: 3..1000');
  if (!(a.rateMbit >= 1 && a.rateMbit <= 10_000)) throw new Error('--rate-mbit: 1..10000');
  return a;
}

type ProcName = 'braid up' | 'braid up --relay' | 'braid relay';
const PROCS: ProcName[] = ['braid up', 'braid up --relay', 'braid relay'];

interface Sample { at: number; proc: ProcName; pid: number; rssKb: number; fds: number; cpuTicks: number }

interface MinuteRow {
  minute: number;
  completed: number;
  aborted: number;
  failed: number;
  megabytes: number;
  errors: Record<string, number>;
  procs: Record<string, { rssMb: number; fds: number; cpuPct: number } | null>;
  events: string[];
}

function sample(proc: ProcName, pid: number | undefined, at: number): Sample | null {
  if (pid === undefined) return null;
  try {
    const rss = Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
    return { at, proc, pid, rssKb: rss, fds: fs.readdirSync(`/proc/${pid}/fd`).length, cpuTicks: cpuTicks(pid) };
  } catch {
    return null; // exited between two samples: the crash check reports it
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** One request through the relay's braid up with curl: whether the body arrived, and what curl said. */
function probe(topo: RelayTopology): Promise<{ ok: boolean; ms: number; said: string }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', topo.client.name, 'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2',
      '--socks5-hostname', `127.0.0.1:${RELAY_PROXY}`, `http://${topo.destAddress()}:${ORIGIN_PORT}/bytes/1000`], { timeout: 5000 },
    (err, stdout, stderr) => resolve({ ok: !err && String(stdout).trim() === '200', ms: Date.now() - t0, said: `${String(stdout).trim()} ${String(stderr).trim()}`.trim() }));
  });
}

function diffCounts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) if (v - (a[k] ?? 0) > 0) out[k] = v - (a[k] ?? 0);
  return out;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const skip = skipUnlessRoot() ?? missingPrerequisite();
  if (skip) {
    process.stderr.write(`soak: cannot run: ${skip}\n`);
    return 2;
  }
  const log = (s: string): void => void process.stdout.write(s + '\n');
  const totalMs = args.minutes * 60_000;
  const restartAtMs = Math.min(180_000, Math.floor(totalMs * 0.25));
  const baselineMs = Math.min(300_000, Math.max(60_000, Math.floor(totalMs / 3)));
  log(`soak: ${args.minutes} min, ${args.workers} workers (${(args.relayShare * 100).toFixed(0)} % through the relay), two ${args.rateMbit} Mbit/s links, ` +
    `${args.flaps ? `link 2 down ${FLAP_DOWN_MS / 1000} s every ${FLAP_EVERY_MS / 1000} s` : 'no link flaps'}, relay restart at ${(restartAtMs / 1000).toFixed(0)} s`);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-soak-'));
  const relayDir = tempRelayDir();
  const topo = await createRelayTopology({ rateMbit: args.rateMbit });
  const samples: Sample[] = [];
  const rows: MinuteRow[] = [];
  const events: { at: number; what: string }[] = [];
  const crashes: string[] = [];
  let relay: RelayProcess | null = null;
  let recoveryMs: number | null = null;
  let clients: NsProcess | undefined;
  const started = Date.now();
  const since = (): number => Date.now() - started;
  const event = (what: string): void => {
    events.push({ at: since(), what });
    log(`  [${(since() / 1000).toFixed(0).padStart(5)} s] ${what}`);
  };
  try {
    // Behind the relay a plain TCP server, as nearly every destination on the internet is (the
    // relay's reason to exist); the direct route's destination speaks MPTCP.
    for (const [ns, tcp] of [[topo.relay, false], [topo.dest, true]] as const) {
      const o = ns.spawn([process.execPath, ORIGIN, '--port', String(ORIGIN_PORT), ...(tcp ? ['--tcp'] : [])], { label: `origin in ${ns.name}` });
      await o.waitForLine(/^listening/, 15_000);
    }
    relay = await startRelay(topo, { port: RELAY_PORT, dir: relayDir });
    const upDirect = topo.client.spawn([process.execPath, BRAID_CLI, 'up', '--host', '127.0.0.1', '--port', String(DIRECT_PROXY), '--dial', 'mptcp',
      '--paths', 'off', '--control', '127.0.0.1:0', '--state-dir', path.join(tmp, 'up-direct')], { label: 'braid up' });
    await upDirect.waitForLine(/proxy listening/, 15_000);
    const upRelay = await startRelayClient(topo.client, { port: RELAY_PROXY, link: relay.link, extra: ['--control', '127.0.0.1:0', '--state-dir', path.join(tmp, 'up-relay')] });
    const procs = (): Record<ProcName, NsProcess | null> => ({ 'braid up': upDirect, 'braid up --relay': upRelay, 'braid relay': relay?.proc ?? null });

    clients = topo.client.spawn([process.execPath, CLIENTS, '--seconds', String(totalMs / 1000), '--workers', String(args.workers), '--relay-share', String(args.relayShare),
      '--direct', `${DIRECT_PROXY}:${topo.relayAddress(1)}:${ORIGIN_PORT}`, '--relay', `${RELAY_PROXY}:${topo.destAddress()}:${ORIGIN_PORT}`], { label: 'soak clients' });
    const counts = (): SoakCounts | null => {
      for (let i = clients!.lines.length - 1; i >= 0; i--) {
        const l = clients!.lines[i]!;
        if (l.startsWith('{')) {
          const j = JSON.parse(l) as { progress?: SoakCounts; final?: SoakCounts };
          return j.final ?? j.progress ?? null;
        }
      }
      return null;
    };

    let nextSample = SAMPLE_MS;
    let nextFlap = FLAP_EVERY_MS - FLAP_DOWN_MS;
    let linkUpAt: number | null = null;
    let restarted = false;
    let lastMinute: { counts: SoakCounts | null; samples: Map<ProcName, Sample> } = { counts: null, samples: new Map() };
    const ticks = clockTicks();
    const deadline = totalMs + 120_000;
    // One pass per second at most; every step below is bounded in time.
    for (let loop = 0; loop < 100_000 && since() < deadline; loop++) {
      const t = since();
      for (const [name, p] of Object.entries(procs()) as [ProcName, NsProcess | null][]) {
        if (p && !p.running && !crashes.some((c) => c.startsWith(name))) {
          crashes.push(`${name} exited at ${(t / 1000).toFixed(0)} s (${p.stderr.trim().split('\n').slice(-3).join(' | ')})`);
          event(`CRASH: ${crashes.at(-1)}`);
        }
      }
      if (!clients.running) break;
      if (args.flaps && t < totalMs && linkUpAt === null && t >= nextFlap) {
        await topo.links[1].setDown();
        linkUpAt = t + FLAP_DOWN_MS;
        nextFlap += FLAP_EVERY_MS;
        event('link 2 down');
      }
      if (linkUpAt !== null && t >= linkUpAt) {
        await topo.links[1].setUp();
        linkUpAt = null;
        event('link 2 up');
      }
      if (!restarted && t >= restartAtMs) {
        restarted = true;
        event('relay: stopping (SIGTERM)');
        await relay.proc.stop(5000);
        relay = await startRelay(topo, { port: RELAY_PORT, dir: relayDir });
        const up = Date.now();
        event('relay: listening again');
        for (let i = 0; i < 100 && Date.now() - up < 15_000; i++) {
          const p = await probe(topo);
          if (p.ok) {
            recoveryMs = Date.now() - up;
            break;
          }
          if (i < 10) event(`relay: probe ${i + 1} failed after ${p.ms} ms: ${p.said.slice(0, 160)}`);
          await sleep(50);
        }
        event(recoveryMs === null ? 'relay: no connection through it within 15 s of the restart' : `relay: a new connection through it worked ${recoveryMs} ms after the restart`);
      }
      if (t >= nextSample) {
        nextSample += SAMPLE_MS;
        const at = since();
        for (const [name, p] of Object.entries(procs()) as [ProcName, NsProcess | null][]) {
          const s = p?.running ? sample(name, p.pid, at) : null;
          if (s) samples.push(s);
        }
        if (Math.round(at / SAMPLE_MS) % (60_000 / SAMPLE_MS) === 0) {
          const c = counts();
          const prev = lastMinute.counts;
          const procsRow: MinuteRow['procs'] = {};
          const now = new Map<ProcName, Sample>();
          for (const name of PROCS) {
            const s = [...samples].reverse().find((x) => x.proc === name && x.at === at);
            if (!s) { procsRow[name] = null; continue; }
            now.set(name, s);
            const before = lastMinute.samples.get(name);
            const cpuPct = before && before.pid === s.pid ? ((s.cpuTicks - before.cpuTicks) / ticks / ((s.at - before.at) / 1000)) * 100 : NaN;
            procsRow[name] = { rssMb: s.rssKb / 1024, fds: s.fds, cpuPct };
          }
          const row: MinuteRow = {
            minute: Math.round(at / 60_000),
            completed: (c?.completed ?? 0) - (prev?.completed ?? 0),
            aborted: (c?.aborted ?? 0) - (prev?.aborted ?? 0),
            failed: (c?.failed ?? 0) - (prev?.failed ?? 0),
            megabytes: ((c?.bytes ?? 0) - (prev?.bytes ?? 0)) / 1e6,
            errors: diffCounts(prev?.errors ?? {}, c?.errors ?? {}),
            procs: procsRow,
            events: events.filter((e) => e.at > at - 60_000 && e.at <= at).map((e) => e.what),
          };
          rows.push(row);
          lastMinute = { counts: c, samples: now };
          log(formatRow(row));
        }
      }
      await sleep(Math.min(1000, Math.max(50, Math.min(nextSample, linkUpAt ?? Infinity, restarted ? Infinity : restartAtMs, nextFlap) - since())));
    }
    if (linkUpAt !== null) await topo.links[1].setUp();
    const final = await clients.waitForLine((l) => l.startsWith('{"final"'), 120_000).then(({ line }) => (JSON.parse(line) as { final: SoakCounts }).final, () => null);
    for (const [name, p] of Object.entries(procs()) as [ProcName, NsProcess | null][]) {
      if (p && !p.running && !crashes.some((c) => c.startsWith(name))) crashes.push(`${name} exited (${p.stderr.trim().split('\n').slice(-3).join(' | ')})`);
    }

    // ---- verdict ----
    const flat: Record<string, { metric: string; baseline: number; end: number; growth: number; ok: boolean }[]> = {};
    const endFrom = totalMs - 60_000;
    const judged = baselineMs + 60_000 <= endFrom;
    for (const name of PROCS) {
      const mine = samples.filter((s) => s.proc === name);
      const base = mine.filter((s) => s.at >= baselineMs && s.at < baselineMs + 60_000);
      const end = mine.filter((s) => s.at >= endFrom);
      flat[name] = (['rssKb', 'fds'] as const).map((metric) => {
        const b = median(base.map((s) => s[metric]));
        const e = median(end.map((s) => s[metric]));
        const growth = (e - b) / b;
        return { metric, baseline: b, end: e, growth, ok: !judged || (Number.isFinite(growth) && growth <= GROWTH_LIMIT) };
      });
    }
    const failures: string[] = [...crashes];
    if (!final) failures.push('the clients printed no final count');
    if (final && final.corrupt > 0) failures.push(`${final.corrupt} completed transfers were corrupt`);
    if (final && (final.byRoute.direct!.completed === 0 || final.byRoute.relay!.completed === 0)) failures.push('a route completed no transfer at all');
    if (recoveryMs === null || recoveryMs > RECOVERY_LIMIT_MS) failures.push(`after the relay restart a new connection worked ${recoveryMs === null ? 'never (15 s)' : `after ${recoveryMs} ms`} (limit ${RECOVERY_LIMIT_MS} ms)`);
    for (const [name, ms] of Object.entries(flat)) for (const m of ms) if (!m.ok) failures.push(`${name}: ${m.metric} grew ${(m.growth * 100).toFixed(1)} % (limit ${GROWTH_LIMIT * 100} %)`);

    log('');
    log(`totals: ${final?.started ?? '?'} connections started, ${final?.completed ?? '?'} completed (direct ${final?.byRoute.direct?.completed ?? '?'}, relay ${final?.byRoute.relay?.completed ?? '?'}), ` +
      `${final?.aborted ?? '?'} aborted on purpose, ${final?.failed ?? '?'} failed, ${final?.cutAtEnd ?? '?'} cut at the end, ${((final?.bytes ?? 0) / 1e9).toFixed(2)} GB, corrupt ${final?.corrupt ?? '?'}`);
    for (const [name, r] of Object.entries(final?.byRoute ?? {})) {
      log(`  ${name}: ${r.completed} completed, ${r.failed} failed, ${(r.bytes / 1e9).toFixed(2)} GB, mean time to the response head ${r.completed ? (r.ttfbMsSum / r.completed).toFixed(0) : '-'} ms, durations ${Object.entries(r.seconds).map(([k, v]) => `${k} ${v}`).join(' ')}`);
    }
    log(`errors by code: ${Object.entries(final?.errors ?? {}).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
    log(`relay restart: a new connection through it worked ${recoveryMs ?? 'never'} ms after it listened again`);
    log(`flatness (median of the minute from ${(baselineMs / 60_000).toFixed(1)} min vs the last minute)${judged ? '' : ' — run too short to judge, not counted'}:`);
    for (const [name, ms] of Object.entries(flat)) {
      log(`  ${name.padEnd(17)} ${ms.map((m) => `${m.metric === 'rssKb' ? 'RSS' : 'fds'} ${m.metric === 'rssKb' ? (m.baseline / 1024).toFixed(1) : m.baseline} -> ${m.metric === 'rssKb' ? (m.end / 1024).toFixed(1) : m.end}${m.metric === 'rssKb' ? ' MB' : ''} (${(m.growth * 100).toFixed(1)} %)`).join(', ')}`);
    }
    log(failures.length ? `SOAK FAILED:\n  ${failures.join('\n  ')}` : 'SOAK PASSED');

    const dir = path.resolve(DIST, '..', 'test-artifacts');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    fs.writeFileSync(file, JSON.stringify({
      when: new Date(started).toISOString(), args, restartAtMs, baselineMs, judged, passed: failures.length === 0, failures,
      totals: final, recoveryMs, flatness: flat, minutes: rows, events, samples, load: os.loadavg(),
    }, null, 2) + '\n');
    log(`wrote ${file}`);
    return failures.length ? 1 : 0;
  } finally {
    await clients?.stop();
    await topo.destroy();
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.rmSync(relayDir, { recursive: true, force: true });
  }
}

function formatRow(r: MinuteRow): string {
  const p = (name: string): string => {
    const x = r.procs[name];
    return x ? `${x.rssMb.toFixed(0).padStart(4)} MB ${String(x.fds).padStart(4)} fd ${Number.isFinite(x.cpuPct) ? x.cpuPct.toFixed(0).padStart(3) : '  -'} %` : '        (none)         ';
  };
  if (r.minute === 1) {
    process.stdout.write(`${'min'.padStart(4)} ${'done'.padStart(6)} ${'abort'.padStart(5)} ${'fail'.padStart(5)} ${'MB'.padStart(7)}   ` +
      `${'braid up'.padEnd(21)}  ${'braid up --relay'.padEnd(21)}  ${'braid relay'.padEnd(21)}  errors / events\n`);
  }
  const errs = Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ');
  return `${String(r.minute).padStart(4)} ${String(r.completed).padStart(6)} ${String(r.aborted).padStart(5)} ${String(r.failed).padStart(5)} ${r.megabytes.toFixed(0).padStart(7)}   ` +
    `${p('braid up')}  ${p('braid up --relay')}  ${p('braid relay')}  ${[errs, ...r.events.filter((e) => !e.startsWith('link 2'))].filter(Boolean).join('; ')}`;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`soak failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});

/**
 * Records in the addon against Node's TLS, in one topology: unshaped 1 GB transfers through the
 * relay, both directions, interleaved per repetition, from `braid up` as it runs (the addon seals
 * what each end sends: the upload at braid up, the download at the relay, proxy/seal-tunnel.ts; and
 * braid up opens what the relay sends, relay/open-tls.ts), from a second `braid up` with
 * BRAID_SEAL=0 BRAID_OPEN=0 (Node's TLS carries both directions, as before), and through
 * shadowsocks-libev; downloads also from a third `braid up` with BRAID_OPEN=0 (sealed at the relay,
 * opened by Node's TLS at braid up: the receiving end that lagged behind in the "missing" stalls,
 * README). Gbit/s and CPU s/GB of each chain's client, server and the whole host;
 * every byte counted at the receiving end. Beside each transfer, the stalls on the client⇄relay
 * links (stalls.ts: gaps of 50 ms or more with nothing arriving at the receiving end, and the
 * sending namespace's MPTCP-level retransmissions).
 *
 *   node dist/test/bench/seal-ab.js [--reps N] [--up | --down]     (default 5, both directions)
 */
import fs from 'node:fs';
import { chainTicks, clockTicks } from './cpu';
import { median, range } from './figures';
import { startRig, stopRig, transfer, uploadFile, type Rig } from './updown-rig';
import { startRelayClient } from '../helpers/relay-topology';
import { describeStallRanges, describeStalls, watchStalls, type StallSample } from './stalls';

const NODE_TLS_PORT = 1085;
const NODE_OPENS_PORT = 1086;
const BYTES = 1e9;

interface Row { gbit: number; client: number; server: number; host: number; stalls: StallSample }
type Direction = 'up' | 'down';

async function main(): Promise<void> {
  const i = process.argv.indexOf('--reps');
  const reps = i > 0 ? Number(process.argv[i + 1]) : 5;
  if (!Number.isInteger(reps) || reps < 1 || reps > 50) throw new Error('--reps takes a whole number from 1 to 50');
  const dirs: Direction[] = process.argv.includes('--up') ? ['up'] : process.argv.includes('--down') ? ['down'] : ['down', 'up'];
  const file = uploadFile(BYTES);
  let rig: Rig | undefined;
  const names = ['sealed', 'sealed, Node opens', 'Node TLS', 'shadowsocks'];
  const rows: Record<string, Row[]> = {};
  for (const d of dirs) for (const n of names) if (d === 'down' || n !== 'sealed, Node opens') rows[`${d} ${n}`] = [];
  try {
    rig = await startRig(null);
    const { topo, ep } = rig;
    const nodeTls = await startRelayClient(topo.client, { port: NODE_TLS_PORT, link: rig.relayLink, extra: ['--control', 'off'], env: { ...process.env, BRAID_SEAL: '0', BRAID_OPEN: '0' } });
    const nodeOpens = await startRelayClient(topo.client, { port: NODE_OPENS_PORT, link: rig.relayLink, extra: ['--control', 'off'], env: { ...process.env, BRAID_OPEN: '0' } });
    const ticks = clockTicks();
    const chains: Array<[string, number, number, number, 'relay' | 'ss']> = [
      ['sealed', ep.socks('relay')!, rig.braidRelay.pid!, rig.relay.pid!, 'relay'],
      ['sealed, Node opens', NODE_OPENS_PORT, nodeOpens.pid!, rig.relay.pid!, 'relay'],
      ['Node TLS', NODE_TLS_PORT, nodeTls.pid!, rig.relay.pid!, 'relay'],
      ['shadowsocks', ep.socks('ss')!, rig.ssLocal.pid!, rig.ssServer.pid!, 'ss'],
    ];
    for (let rep = 1; rep <= reps; rep++) {
      for (const dir of dirs) {
        const parts: string[] = [];
        for (const [name, socks, client, server, p] of chains) {
          if (!rows[`${dir} ${name}`]) continue;
          const t0 = chainTicks(client, server);
          const url = dir === 'up' ? `${ep.url('up', p, 0)}?hash=0` : ep.url('down', p, BYTES);
          // The receiving end of the client⇄relay leg: the relay's namespace for uploads, the client's for downloads.
          const [receiver, receiverNs, senderNs] = dir === 'up' ? [server, topo.relay, topo.client] : [client, topo.client, topo.relay];
          const devs = topo.links.map((l) => l.endIn(receiverNs).dev);
          const { result: mbit, stalls } = await watchStalls({ pid: receiver, ns: receiverNs }, devs, senderNs, () => transfer(topo.client, dir, url, { bytes: BYTES, file: dir === 'up' ? file : undefined, maxSeconds: 60, socks, mptcpize: false }));
          const t1 = chainTicks(client, server);
          const per = (k: 'client' | 'server' | 'host'): number => (t1[k] - t0[k]) / ticks / (BYTES / 1e9);
          const row = { gbit: mbit / 1000, client: per('client'), server: per('server'), host: per('host'), stalls };
          rows[`${dir} ${name}`]!.push(row);
          parts.push(`${name} ${row.gbit.toFixed(2)} Gbit/s (CPU s/GB client ${row.client.toFixed(2)}, server ${row.server.toFixed(2)}, host ${row.host.toFixed(2)}; stalls ${describeStalls(stalls)})`);
        }
        console.log(`rep ${rep} ${dir}: ${parts.join(' | ')}`);
      }
    }
  } finally {
    await stopRig(rig);
    fs.rmSync(file.dir, { recursive: true, force: true });
  }
  console.log(`\nunshaped 1 GB transfers through the relay, ${reps} interleaved repetitions: median [range]`);
  for (const [name, rs] of Object.entries(rows)) {
    const col = (f: (r: Row) => number, d: number): string => `${median(rs.map(f)).toFixed(d)} [${range(rs.map(f), d)}]`;
    console.log(`${name.padEnd(22)} ${col((r) => r.gbit, 2)} Gbit/s; CPU s/GB client ${col((r) => r.client, 2)}, server ${col((r) => r.server, 2)}, host ${col((r) => r.host, 2)}; stalls ${describeStallRanges(rs.map((r) => r.stalls))}`);
  }
  for (const dir of dirs) {
    const sealed = rows[`${dir} sealed`]!;
    const node = rows[`${dir} Node TLS`]!;
    const ss = rows[`${dir} shadowsocks`]!;
    // The sealing end: braid up for uploads, the relay for downloads.
    const end = (r: Row): number => (dir === 'up' ? r.client : r.server);
    console.log(`${dir}: sealed / Node TLS per repetition: throughput ${range(sealed.map((r, k) => r.gbit / node[k]!.gbit), 2)}, sealing end's CPU ${range(sealed.map((r, k) => end(r) / end(node[k]!)), 2)}; sealed / shadowsocks throughput ${range(sealed.map((r, k) => r.gbit / ss[k]!.gbit), 2)}`);
    const nodeOpened = rows[`${dir} sealed, Node opens`];
    if (nodeOpened) {
      const gapSum = (rs: Row[]): string => `${rs.reduce((n, r) => n + r.stalls.gaps, 0)} gaps (${rs.reduce((n, r) => n + r.stalls.missingQueued.length, 0)} missing, ${rs.reduce((n, r) => n + r.stalls.receiverBeyondWindow, 0)} dropped beyond window), ${rs.reduce((n, r) => n + r.stalls.gapSeconds, 0).toFixed(2)} s`;
      console.log(`${dir}: opened in the addon / by Node's TLS per repetition: throughput ${range(sealed.map((r, k) => r.gbit / nodeOpened[k]!.gbit), 2)}, braid up's CPU ${range(sealed.map((r, k) => r.client / nodeOpened[k]!.client), 2)}; stalls in all: ${gapSum(sealed)} against ${gapSum(nodeOpened)}`);
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

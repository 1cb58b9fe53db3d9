/**
 * The WiFi + cellular set-up of policy-topology.ts, with cellular's link passing through a middle
 * namespace that can add delay while traffic runs: its two ports are bridged by the kernel (no
 * delay), or unbridged and joined by the userspace delay line (test/helpers/delay-line.py; this
 * kernel has no netem). Each link is shaped with tbf on both ends and has its own default route.
 *
 *   client wlan0 ──────────────────────── srv1 server
 *   client wwan0 ── m2a [bridge | delay line] m2b ── srv2 server
 */
import { DELAY_LINE } from './relay-topology';
import { run, tbf, Topology, type Namespace, type NsProcess } from './netns';

export interface QualityTopology {
  topology: Topology;
  client: Namespace;
  server: Namespace;
  middle: Namespace;
  dest: string;
  /** client-side address of each link */
  wifiClient: string;
  cellClient: string;
  rx(dev: string): Promise<number>;
  /** Adds `oneWayMs` each way on wwan0's link (round trip + 2x) until clearDelay(). */
  addDelay(oneWayMs: number): Promise<void>;
  clearDelay(): Promise<void>;
  destroy(): Promise<void>;
}

/** `cellFirst`: wwan0's default route gets the lower metric, so new connections start there. */
export async function createQualityTopology(opts: { rateMbit: number; cellFirst?: boolean }): Promise<QualityTopology> {
  const topology = new Topology();
  try {
    const client = await topology.addNamespace('q-c');
    const server = await topology.addNamespace('q-s');
    const middle = await topology.addNamespace('q-m');
    const octet = ((process.pid * 13) % 200) + 20;
    const shape = tbf(opts.rateMbit);
    const wifiClient = `10.${octet}.1.1`;
    const cellClient = `10.${octet}.2.1`;
    // WiFi: straight to the server.
    await run(['ip', 'link', 'add', 'wlan0', 'netns', client.name, 'type', 'veth', 'peer', 'name', 'srv1', 'netns', server.name]);
    // Cellular: through the middle namespace.
    await run(['ip', 'link', 'add', 'wwan0', 'netns', client.name, 'type', 'veth', 'peer', 'name', 'm2a', 'netns', middle.name]);
    await run(['ip', 'link', 'add', 'm2b', 'netns', middle.name, 'type', 'veth', 'peer', 'name', 'srv2', 'netns', server.name]);
    await client.exec(['ip', 'addr', 'add', `${wifiClient}/24`, 'dev', 'wlan0']);
    await client.exec(['ip', 'addr', 'add', `${cellClient}/24`, 'dev', 'wwan0']);
    await server.exec(['ip', 'addr', 'add', `10.${octet}.1.2/24`, 'dev', 'srv1']);
    await server.exec(['ip', 'addr', 'add', `10.${octet}.2.2/24`, 'dev', 'srv2']);
    await middle.exec(['ip', 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    for (const d of ['m2a', 'm2b']) await middle.exec(['ip', 'link', 'set', d, 'master', 'br0']);
    for (const d of ['m2a', 'm2b', 'br0']) await middle.exec(['ip', 'link', 'set', d, 'up']);
    for (const d of ['wlan0', 'wwan0']) {
      await client.exec(['ip', 'link', 'set', d, 'up']);
      await client.exec(['tc', 'qdisc', 'add', 'dev', d, 'root', ...shape]);
    }
    for (const d of ['srv1', 'srv2']) {
      await server.exec(['ip', 'link', 'set', d, 'up']);
      await server.exec(['tc', 'qdisc', 'add', 'dev', d, 'root', ...shape]);
    }
    await client.exec(['ip', 'route', 'replace', 'default', 'via', `10.${octet}.1.2`, 'dev', 'wlan0', 'metric', opts.cellFirst ? '200' : '100']);
    await client.exec(['ip', 'route', 'replace', 'default', 'via', `10.${octet}.2.2`, 'dev', 'wwan0', 'metric', opts.cellFirst ? '100' : '200']);
    const dest = '198.51.100.1';
    await server.exec(['ip', 'addr', 'add', `${dest}/32`, 'dev', 'lo']);
    await server.setMptcpLimits(8, 8);
    let line: NsProcess | null = null;
    return {
      topology, client, server, middle, dest, wifiClient, cellClient,
      rx: async (dev) => Number((await client.exec(['cat', `/sys/class/net/${dev}/statistics/rx_bytes`])).stdout.trim()),
      addDelay: async (oneWayMs) => {
        if (line) throw new Error('a delay is already on');
        for (const d of ['m2a', 'm2b']) await middle.exec(['ip', 'link', 'set', d, 'nomaster']);
        line = middle.spawn(['python3', DELAY_LINE, 'm2a', 'm2b', String(oneWayMs)], { label: 'delay line' });
        await line.waitForLine(/^ready$/, 10_000);
      },
      clearDelay: async () => {
        await line?.stop(3000);
        line = null;
        for (const d of ['m2a', 'm2b']) await middle.exec(['ip', 'link', 'set', d, 'master', 'br0']);
      },
      destroy: () => topology.destroy(),
    };
  } catch (err) {
    await topology.destroy();
    throw err;
  }
}

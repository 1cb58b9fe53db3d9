/**
 * The set-up of a laptop on WiFi plus a phone's cellular: a client namespace whose two links are
 * named as the kernel names such links (`wlan0`, told apart as WiFi by its name, and `wwan0`,
 * cellular), each shaped with tbf on both ends and each with its own default route (WiFi
 * preferred, metric 100 against 200, as NetworkManager sets them up), and a server namespace whose
 * destination addresses live on its loopback, so that they are reached only through those default
 * routes. Braid (not the test) manages the client's paths; the server accepts joins (limits 8/8).
 */
import { run, tbf, Topology, type Namespace } from './netns';

export interface PolicyLink {
  dev: 'wlan0' | 'wwan0';
  /** the server's end */
  peer: string;
  client: string;
  server: string;
}

export interface PolicyTopology {
  topology: Topology;
  client: Namespace;
  server: Namespace;
  /** destination addresses on the server's loopback */
  dest: string;
  dest2: string;
  wifi: PolicyLink;
  cell: PolicyLink;
  /** client-side interface counters */
  rx(dev: string): Promise<number>;
  tx(dev: string): Promise<number>;
  /** both ends down (an unplugged cable), and back with the default route */
  setDown(l: PolicyLink): Promise<void>;
  setUp(l: PolicyLink): Promise<void>;
  destroy(): Promise<void>;
}

export async function createPolicyTopology(opts: { rateMbit: number }): Promise<PolicyTopology> {
  const topology = new Topology();
  try {
    const client = await topology.addNamespace('pol-c');
    const server = await topology.addNamespace('pol-s');
    const octet = ((process.pid * 11) % 200) + 20;
    const link = (dev: 'wlan0' | 'wwan0', n: number): PolicyLink => ({ dev, peer: `srv${n}`, client: `10.${octet}.${n}.1`, server: `10.${octet}.${n}.2` });
    const wifi = link('wlan0', 1);
    const cell = link('wwan0', 2);
    const metric = (l: PolicyLink): string => (l === wifi ? '100' : '200');
    const defaultRoute = (l: PolicyLink): Promise<unknown> =>
      client.exec(['ip', 'route', 'replace', 'default', 'via', l.server, 'dev', l.dev, 'metric', metric(l)]);
    for (const l of [wifi, cell]) {
      await run(['ip', 'link', 'add', l.dev, 'netns', client.name, 'type', 'veth', 'peer', 'name', l.peer, 'netns', server.name]);
      await client.exec(['ip', 'addr', 'add', `${l.client}/24`, 'dev', l.dev]);
      await server.exec(['ip', 'addr', 'add', `${l.server}/24`, 'dev', l.peer]);
      await client.exec(['ip', 'link', 'set', l.dev, 'up']);
      await server.exec(['ip', 'link', 'set', l.peer, 'up']);
      await client.exec(['tc', 'qdisc', 'add', 'dev', l.dev, 'root', ...tbf(opts.rateMbit)]);
      await server.exec(['tc', 'qdisc', 'add', 'dev', l.peer, 'root', ...tbf(opts.rateMbit)]);
      await defaultRoute(l);
    }
    const dest = '198.51.100.1';
    const dest2 = '198.51.100.2';
    await server.exec(['ip', 'addr', 'add', `${dest}/32`, 'dev', 'lo']);
    await server.exec(['ip', 'addr', 'add', `${dest2}/32`, 'dev', 'lo']);
    await server.setMptcpLimits(8, 8);
    const counter = async (dev: string, what: 'rx' | 'tx'): Promise<number> =>
      Number((await client.exec(['cat', `/sys/class/net/${dev}/statistics/${what}_bytes`])).stdout.trim());
    return {
      topology, client, server, dest, dest2, wifi, cell,
      rx: (dev) => counter(dev, 'rx'),
      tx: (dev) => counter(dev, 'tx'),
      setDown: async (l) => {
        await client.exec(['ip', 'link', 'set', l.dev, 'down']);
        await server.exec(['ip', 'link', 'set', l.peer, 'down']);
      },
      setUp: async (l) => {
        await client.exec(['ip', 'link', 'set', l.dev, 'up']);
        await server.exec(['ip', 'link', 'set', l.peer, 'up']);
        await defaultRoute(l);
      },
      destroy: () => topology.destroy(),
    };
  } catch (err) {
    await topology.destroy();
    throw err;
  }
}

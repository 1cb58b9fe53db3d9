/**
 * Prometheus text exposition for the relay, served on its own loopback port so that scraping never
 * shares the public listener. Only what an operator acts on: connections, bytes, subflows per
 * connection, authentication failures and dial errors by reason.
 */
import http from 'node:http';

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

class Family {
  readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly type: 'counter' | 'gauge', readonly help: string) {}
  add(n: number, labels: Labels = {}): void {
    const key = labelText(labels);
    const cur = this.values.get(key);
    if (cur) cur.value += n;
    else this.values.set(key, { labels, value: n });
  }
  clear(): void {
    this.values.clear();
  }
  set(n: number, labels: Labels = {}): void {
    this.values.set(labelText(labels), { labels, value: n });
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    if (this.values.size === 0 && this.type === 'counter') lines.push(`${this.name} 0`);
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${labelText(labels)} ${value}`);
    return lines.join('\n');
  }
}

export class RelayMetrics {
  readonly connections = new Family('braid_relay_connections_total', 'counter', 'Client connections accepted (before TLS).');
  readonly active = new Family('braid_relay_connections_active', 'gauge', 'Tunnels currently relaying.');
  readonly tunnels = new Family('braid_relay_tunnels_total', 'counter', 'CONNECT requests that reached their destination.');
  readonly sealed = new Family('braid_relay_sealed_downloads_total', 'counter', 'Tunnels whose download the addon sealed as TLS records (the rest went through Node\'s TLS).');
  readonly nudges = new Family('braid_relay_ack_nudges_total', 'counter', 'TLS records with no data sent down after a bulk upload paused, each carrying an up-to-date MPTCP DATA_ACK (proxy/ack-nudge.ts).');
  readonly bytes = new Family('braid_relay_bytes_total', 'counter', 'Payload bytes relayed, by direction (up = client to destination).');
  readonly authFailures = new Family('braid_relay_auth_failures_total', 'counter', 'Requests refused for a missing or wrong secret.');
  readonly dialErrors = new Family('braid_relay_dial_errors_total', 'counter', 'Destination dials that failed, by reason.');
  readonly refused = new Family('braid_relay_refused_total', 'counter', 'Connections refused before dialling, by reason (limit, policy, handshake).');
  readonly subflows = new Family('braid_relay_connection_subflows', 'gauge', 'Active tunnels by how many MPTCP subflows their client connection has (0 = plain TCP or fallback).');
  readonly speedBytes = new Family('braid_relay_speedtest_bytes_total', 'counter', 'Bytes moved by speed tests (braid doctor --speed), by direction (up = client to relay).');

  /** Called before each scrape, to refresh gauges that are cheaper to compute on demand. */
  beforeRender: (() => void) | null = null;

  render(): string {
    this.beforeRender?.();
    return [this.connections, this.active, this.tunnels, this.sealed, this.nudges, this.bytes, this.authFailures, this.dialErrors, this.refused, this.subflows, this.speedBytes]
      .map((f) => f.render())
      .join('\n') + '\n';
  }

  serve(host: string, port: number): Promise<http.Server> {
    const server = http.createServer((req, res) => {
      if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
        res.end(this.render());
      } else {
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        res.end('not found: try /metrics\n');
      }
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve(server));
    });
  }
}


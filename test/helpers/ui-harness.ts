/**
 * The dashboard tests' moves: a two-link topology whose client interfaces carry names that say
 * their kind (eth0, wwan0) and whose endpoints Braid owns, `braid up` with its control API inside
 * the client namespace, and the Chromium driver (ui-driver.ts) running there too, spoken to in
 * JSON lines with every request bounded in time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { run, type Namespace } from './netns';
import { createPathsTopology, type PathsTopology } from './paths-harness';

export const UI_DRIVER = path.join(__dirname, 'ui-driver.js');
export const CHROMIUM = process.env.BRAID_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or undefined. */
export function missingBrowser(): string | undefined {
  if (!fs.existsSync(CHROMIUM)) return `needs Chromium at ${CHROMIUM} (apt-get install chromium, or set BRAID_CHROMIUM)`;
  try {
    require.resolve('playwright-core');
  } catch {
    return 'needs the playwright-core dev dependency (npm ci)';
  }
  const dist = path.resolve(__dirname, '..', '..', '..', 'renderer', 'dist', 'index.html');
  if (!fs.existsSync(dist)) return `the dashboard is not built (${dist}); run npm run build`;
  return undefined;
}

export interface UiTopology extends PathsTopology {
  /** client interface names by link number */
  ifname: { 1: string; 2: string };
  clientAddress(link: 1 | 2): string;
  serverAddress(link: 1 | 2): string;
}

/**
 * createPathsTopology, then the client's ends renamed so that Braid classifies them as an Ethernet
 * and a cellular link (by name, as it does for real USB modems and NICs). A rename needs the link
 * down, which flushes the routes through it; they are added again under the new name.
 */
export async function createUiTopology(opts: { rateMbit: number | null }): Promise<UiTopology> {
  const t = await createPathsTopology(opts);
  const ifname = { 1: 'eth0', 2: 'wwan0' } as const;
  try {
    for (const [n, link] of [[1, t.l1], [2, t.l2]] as const) {
      const from = link.a.dev;
      await t.client.exec(['ip', 'link', 'set', 'dev', from, 'down']);
      await t.client.exec(['ip', 'link', 'set', 'dev', from, 'name', ifname[n]]);
      await t.client.exec(['ip', 'link', 'set', 'dev', ifname[n], 'up']);
    }
    await t.client.exec(['ip', 'route', 'replace', t.l1.subnet4, 'via', t.l2.b.ipv4, 'dev', ifname[2], 'metric', '100']);
    await t.client.exec(['ip', '-6', 'route', 'replace', t.l1.subnet6, 'via', t.l2.b.ipv6, 'dev', ifname[2], 'metric', '1024']);
  } catch (err) {
    await t.destroy();
    throw err;
  }
  return {
    ...t,
    ifname,
    clientAddress: (n) => (n === 1 ? t.l1.a.ipv4 : t.l2.a.ipv4),
    serverAddress: (n) => (n === 1 ? t.l1.b.ipv4 : t.l2.b.ipv4),
  };
}

/** Every process still inside a namespace, killed by pid (Chromium's helpers included). */
export async function killAllIn(ns: Namespace): Promise<number> {
  const r = await run(['ip', 'netns', 'pids', ns.name], { allowFailure: true });
  const pids = r.stdout.split(/\s+/).map(Number).filter((p) => Number.isInteger(p) && p > 1 && p !== process.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  return pids.length;
}

interface Answer {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

/** The Chromium driver inside a namespace. */
export class UiDriver {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  private stderr = '';
  readonly exited: Promise<number | null>;
  private ready: Promise<void>;

  constructor(ns: Namespace) {
    this.child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, UI_DRIVER], { stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(this.child);
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-16_000)));
    this.child.stdin!.on('error', () => {});
    let markReady: () => void = () => {};
    this.ready = new Promise((r) => (markReady = r));
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let msg: Answer & { ready?: boolean };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        return;
      }
      if (msg.ready) return markReady();
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      clearTimeout(w.timer);
      if (msg.ok) w.resolve(msg.result);
      else w.reject(new Error(`ui-driver: ${msg.error}`));
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        live.delete(this.child);
        for (const [id, w] of this.waiting) {
          clearTimeout(w.timer);
          w.reject(new Error(`ui-driver exited (code ${code}) before answering; stderr: ${this.stderr.slice(-2000)}`));
          this.waiting.delete(id);
        }
        resolve(code);
      });
    });
  }

  async request<T = unknown>(op: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    await Promise.race([
      this.ready,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`ui-driver not ready within 15 s; stderr: ${this.stderr}`)), 15_000).unref()),
    ]);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`ui-driver: '${op}' took over ${timeoutMs} ms; stderr: ${this.stderr.slice(-2000)}`));
      }, timeoutMs);
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.stdin!.write(JSON.stringify({ id, op, ...args }) + '\n');
    });
  }

  /** Asks it to close Chromium and exit; SIGKILL if it has not within `graceMs`. */
  async quit(graceMs = 8000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin!.write(JSON.stringify({ id: 0, op: 'quit' }) + '\n');
    this.child.stdin!.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Polls `probe` until it returns non-undefined; bounded in time and in tries. */
export async function poll<T>(probe: () => Promise<T | undefined>, withinMs: number, what: string, everyMs = 250): Promise<T> {
  const start = Date.now();
  let last: unknown = null;
  for (let i = 0; i < Math.ceil(withinMs / everyMs) + 1; i++) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() - start > withinMs) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${what}: not within ${withinMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
}

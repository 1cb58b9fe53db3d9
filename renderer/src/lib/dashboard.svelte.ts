/**
 * The dashboard's state, fed by one BraidClient: what the core last said (status, paths,
 * connections, the latest stats tick), the chart's ring of samples, and the errors to show.
 * Views read it and call its actions; nothing else talks to the client.
 */
import type {
  ConnectionView, DoctorFinding, DoctorProgressView, DoctorReport, PathPolicy, PathQualityView, PathsView, PathUsageView, ProgramPathView,
  StatsTick, StatusView,
} from '../../../electron/core/contract/index';
import type { PathRuleView } from '../../../electron/core/contract/index';
import { BraidApiError, type BraidClient, type LinkState } from '../client';
import { StatsRing } from './ring';

export interface UiError {
  id: number;
  code: string;
  message: string;
  source: string;
  at: number;
  count: number;
}

export const WINDOW_SECONDS = 300;
const RING_CAPACITY = 900;            // 5 minutes at the default 500 ms tick, with room for a faster one
const MAX_ERRORS = 6;
const CONNECTIONS_POLL_MS = 1000;
/** Data use, path quality and per-program totals move with traffic, not with events. */
const METERS_POLL_MS = 2000;

export class Dashboard {
  link = $state.raw<LinkState>({ kind: 'connecting', attempt: 1 });
  status = $state.raw<StatusView | null>(null);
  paths = $state.raw<PathsView | null>(null);
  connections = $state.raw<ConnectionView[]>([]);
  latest = $state.raw<StatsTick | null>(null);
  errors = $state<UiError[]>([]);
  /** Every path a tick has named since the page opened, sorted: the legend keeps them when idle. */
  seenPaths = $state.raw<string[]>([]);
  /** Bumped per tick pushed into `ring`; the chart redraws on it. */
  ringVersion = $state(0);
  busy = $state<Record<string, boolean>>({});
  /** The last diagnosis, and one under way (started here or by `braid doctor`): its progress and findings so far. */
  doctor = $state.raw<DoctorReport | null>(null);
  doctorProgress = $state.raw<DoctorProgressView | null>(null);
  doctorLive = $state.raw<DoctorFinding[]>([]);
  readonly ring = new StatsRing(RING_CAPACITY);
  /** by interface name: data used and its cap; measured quality */
  usage = $state.raw<Record<string, PathUsageView>>({});
  quality = $state.raw<Record<string, PathQualityView>>({});
  programs = $state.raw<ProgramPathView[]>([]);
  private meters: ReturnType<typeof setInterval> | null = null;

  private nextErrorId = 1;
  private readonly off: (() => void)[] = [];
  private poll: ReturnType<typeof setInterval> | null = null;
  private polling = false;

  constructor(readonly client: BraidClient) {
    this.off.push(
      client.onLink((s) => {
        const wasOpen = this.link.kind === 'open';
        this.link = s;
        if (s.kind === 'open' && !wasOpen) void this.refreshAll();
      }),
      client.on('stats', (t) => this.onTick(t)),
      client.on('status.changed', (s) => {
        this.status = s;
        this.paths ??= s.paths;
      }),
      client.on('paths.changed', (p) => (this.paths = p)),
      client.on('connection.opened', (c) => {
        if (!this.connections.some((x) => x.id === c.id)) this.connections = [...this.connections, c];
      }),
      client.on('connection.closed', (c) => (this.connections = this.connections.filter((x) => x.id !== c.id))),
      client.on('error', (e) => this.report(e.code, e.message, e.source)),
      client.on('doctor.progress', (p) => {
        if (this.doctorProgress?.runId !== p.runId) this.doctorLive = [];
        this.doctorProgress = p;
        if (p.finding) this.doctorLive = [...this.doctorLive, p.finding];
      }),
      client.on('doctor.finished', (r) => {
        this.doctor = r;
        this.doctorProgress = null;
        this.doctorLive = [];
      }),
    );
    this.poll = setInterval(() => void this.pollConnections(), CONNECTIONS_POLL_MS);
    this.meters = setInterval(() => void this.pollMeters(), METERS_POLL_MS);
  }

  private async pollMeters(): Promise<void> {
    if (this.link.kind !== 'open' || (typeof document !== 'undefined' && document.hidden)) return;
    try {
      const [u, q, p] = await Promise.all([this.client.call('paths.usage'), this.client.call('paths.quality'), this.client.call('stats.programs')]);
      this.usage = Object.fromEntries(u.interfaces.map((i) => [i.name, i]));
      this.quality = q;
      this.programs = p;
    } catch (err) {
      this.reportError(err, 'paths.usage');
    }
  }

  destroy(): void {
    for (const f of this.off.splice(0)) f();
    if (this.poll) clearInterval(this.poll);
    if (this.meters) clearInterval(this.meters);
    this.client.close();
  }

  // ---- reading ----

  private async refreshAll(): Promise<void> {
    await Promise.all([
      this.attempt('status', async () => {
        const s = await this.client.call('status');
        this.status = s;
        this.paths ??= s.paths;
      }),
      // The detailed list (with SSID and signal) is slower than status; it replaces status' view.
      this.attempt('paths.list', async () => (this.paths = await this.client.call('paths.list'))),
      this.attempt('connections.list', async () => (this.connections = await this.client.call('connections.list'))),
      this.pollMeters(),
      this.attempt('doctor.last', async () => (this.doctor ??= await this.client.call('doctor.last'))),
      this.attempt('stats.history', async () => {
        const history = await this.client.call('stats.history', { seconds: WINDOW_SECONDS });
        for (const t of history) this.ring.push(t);
        this.see(history);
        if (history.length) this.latest = history[history.length - 1]!;
        this.ringVersion++;
      }),
    ]);
  }

  private see(ticks: StatsTick[]): void {
    const known = new Set(this.seenPaths);
    const before = known.size;
    for (const t of ticks) for (const p of t.paths) known.add(p.path);
    if (known.size !== before) this.seenPaths = [...known].sort((a, b) => a.localeCompare(b));
  }

  private onTick(t: StatsTick): void {
    this.see([t]);
    this.latest = t;
    this.ring.push(t);
    this.ringVersion++;
  }

  private async pollConnections(): Promise<void> {
    // Byte counts and subflows only change in the list; events say only open/closed.
    if (this.link.kind !== 'open' || this.polling || (typeof document !== 'undefined' && document.hidden)) return;
    if (this.connections.length === 0 && (this.latest?.connections ?? 0) === 0) return;
    this.polling = true;
    try {
      this.connections = await this.client.call('connections.list');
    } catch (err) {
      this.reportError(err, 'connections.list');
    } finally {
      this.polling = false;
    }
  }

  // ---- acting ----

  async setProxy(running: boolean): Promise<void> {
    await this.attempt('proxy', async () => {
      const p = await this.client.call(running ? 'proxy.start' : 'proxy.stop');
      if (this.status) this.status = { ...this.status, proxy: p };
    });
  }

  /** "All apps": transparent mode on or off (the core refuses, with a reason, when it cannot). */
  async setTransparent(enabled: boolean): Promise<void> {
    await this.attempt('transparent', async () => {
      const t = await this.client.call('transparent.set', { enabled });
      if (this.status) this.status = { ...this.status, transparent: t };
    });
  }

  async setPolicy(iface: string, policy: PathPolicy): Promise<boolean> {
    return this.attempt(`policy:${iface}`, async () => {
      this.paths = await this.client.call('paths.setPolicy', { interface: iface, policy });
    });
  }

  /** Replaces the per-destination rules; resolves with the error to show next to the editor, or null. */
  async setRules(rules: PathRuleView[]): Promise<string | null> {
    this.busy.rules = true;
    try {
      this.paths = await this.client.call('paths.setRules', { rules });
      return null;
    } catch (err) {
      if (!(err instanceof BraidApiError)) this.reportError(err, 'paths.setRules');
      return err instanceof BraidApiError ? err.message : String(err);
    } finally {
      delete this.busy.rules;
    }
  }

  async closeConnection(id: number): Promise<void> {
    await this.attempt(`close:${id}`, async () => {
      await this.client.call('connections.close', { id });
      this.connections = this.connections.filter((c) => c.id !== id);
    });
  }

  /** Resolves with an error message to show next to the field (not repeated above), or null on success. */
  async closeConnections(ids: number[]): Promise<void> {
    await this.attempt('closeMany', async () => {
      await this.client.call('connections.closeMany', { ids });
      const gone = new Set(ids);
      this.connections = this.connections.filter((c) => !gone.has(c.id));
    });
  }

  async importRelay(link: string): Promise<string | null> {
    this.busy.relay = true;
    try {
      const relay = await this.client.call('relay.import', { link: link.trim() });
      if (this.status) this.status = { ...this.status, relay };
      return null;
    } catch (err) {
      if (!(err instanceof BraidApiError)) this.reportError(err, 'relay.import');
      return err instanceof BraidApiError ? `${err.message} (${err.code})` : String(err);
    } finally {
      delete this.busy.relay;
    }
  }

  /** Runs a diagnosis; its progress and result arrive as events (also when `braid doctor` started it). */
  async diagnose(speed: boolean): Promise<void> {
    await this.attempt('doctor', async () => {
      this.doctorLive = [];
      this.doctorProgress = { runId: -1, step: 'starting', done: 0, total: 1, finding: null };
      try {
        this.doctor = await this.client.call('doctor.run', { speed });
      } finally {
        this.doctorProgress = null;
      }
    });
  }

  async clearRelay(): Promise<void> {
    await this.attempt('relay', async () => {
      await this.client.call('relay.clear');
      if (this.status) this.status = { ...this.status, relay: null };
    });
  }

  /** Runs an action with a busy flag; failures become visible errors. True when it succeeded. */
  private async attempt(key: string, fn: () => Promise<unknown>): Promise<boolean> {
    this.busy[key] = true;
    try {
      await fn();
      return true;
    } catch (err) {
      this.reportError(err, key);
      return false;
    } finally {
      delete this.busy[key];
    }
  }

  // ---- errors ----

  reportError(err: unknown, source: string): void {
    if (err instanceof BraidApiError) this.report(err.code, err.message, err.command ?? source);
    else this.report('EUI', err instanceof Error ? err.message : String(err), source);
  }

  report(code: string, message: string, source: string): void {
    const same = this.errors.find((e) => e.code === code && e.message === message);
    if (same) {
      same.count++;
      same.at = Date.now();
      return;
    }
    this.errors.unshift({ id: this.nextErrorId++, code, message, source, at: Date.now(), count: 1 });
    if (this.errors.length > MAX_ERRORS) this.errors.length = MAX_ERRORS;
  }

  dismiss(id: number): void {
    const i = this.errors.findIndex((e) => e.id === id);
    if (i >= 0) this.errors.splice(i, 1);
  }
}

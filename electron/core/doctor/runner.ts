/**
 * The doctor inside a running Braid (`braid up`, the desktop app): one diagnosis at a time, its
 * progress and result on the event bus, the last result kept for the dashboard and the tray.
 */
import type { ConnectionView, DoctorReport, DoctorRunParams, DoctorSummaryView } from '../contract';
import type { EventBus } from '../control/handlers';
import { BraidError } from '../errors';
import type { ConnectionSnapshot } from '../proxy/tracker';
import type { BraidService } from '../service';
import { summarize } from './findings';
import { runDoctor } from './run';

export class DoctorRunner {
  private last: DoctorReport | null = null;
  private running: Promise<DoctorReport> | null = null;
  private runs = 0;

  constructor(
    private readonly service: BraidService,
    private readonly bus: EventBus,
    private readonly connectionView: (c: ConnectionSnapshot) => ConnectionView,
    private readonly onFinished: () => void = () => {},
  ) {}

  get lastReport(): DoctorReport | null {
    return this.last;
  }

  summary(): DoctorSummaryView | null {
    return this.last ? summarize(this.last) : null;
  }

  run(params: DoctorRunParams): Promise<DoctorReport> {
    if (this.running) throw new BraidError('EBUSY', 'a diagnosis is already running; its progress comes as doctor.progress events');
    const runId = ++this.runs;
    const svc = this.service;
    const status = svc.paths?.status() ?? null;
    const proxy = svc.proxy;
    this.running = runDoctor({
      config: svc.config,
      stateDir: svc.stateDir,
      running: {
        connections: () => (proxy?.tracker.list() ?? []).map((c) => this.connectionView(c)),
        managed: status?.managed ?? false,
        braidIds: new Set((status?.interfaces ?? []).flatMap((i) => i.endpoints.filter((e) => e.owner === 'braid').map((e) => e.id))),
        notes: new Map((status?.interfaces ?? []).map((i) => [i.name, i.note])),
      },
    }, params, (p) => this.bus.emit('doctor.progress', { runId, ...p }))
      .then((report) => {
        this.last = report;
        this.bus.emit('doctor.finished', report);
        this.onFinished();
        return report;
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }
}

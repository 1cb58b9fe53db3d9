/**
 * Findings as the doctor collects them: each in plain words with a fix, streamed to whoever watches
 * (the CLI's progress lines, the dashboard) as it is made.
 */
import type { DoctorFinding, DoctorReport, DoctorSummaryView, FindingStatus } from '../contract';

export class Findings {
  readonly list: DoctorFinding[] = [];

  constructor(private readonly onAdd: (f: DoctorFinding) => void = () => {}) {}

  add(check: string, subject: string | null, status: FindingStatus, message: string, fix: string | null = null): DoctorFinding {
    const f: DoctorFinding = { check, subject, status, message, fix };
    this.list.push(f);
    this.onAdd(f);
    return f;
  }

  ok(check: string, subject: string | null, message: string): DoctorFinding {
    return this.add(check, subject, 'ok', message);
  }

  warn(check: string, subject: string | null, message: string, fix: string | null = null): DoctorFinding {
    return this.add(check, subject, 'warn', message, fix);
  }

  fail(check: string, subject: string | null, message: string, fix: string | null = null): DoctorFinding {
    return this.add(check, subject, 'fail', message, fix);
  }

  /** The finding of one check about one subject, if made. */
  get(check: string, subject: string | null): DoctorFinding | undefined {
    return this.list.find((f) => f.check === check && f.subject === subject);
  }

  failed(check: string, subject: string | null): boolean {
    return this.get(check, subject)?.status === 'fail';
  }
}

/** Nothing fails: no finding keeps aggregation from working. */
export const reportOk = (findings: DoctorFinding[]): boolean => !findings.some((f) => f.status === 'fail');

export function summarize(r: DoctorReport): DoctorSummaryView {
  const failing = r.findings.filter((f) => f.status === 'fail');
  return { at: r.finishedAt, ok: r.ok, failing: failing.length, firstFailing: failing[0] ?? null };
}

/** `braid doctor`'s exit status: 0 when nothing blocks aggregation, 1 when something does. */
export const exitStatus = (r: Pick<DoctorReport, 'ok'>): number => (r.ok ? 0 : 1);

/** `braid doctor`'s text report: findings grouped as the dashboard groups them, then the speed. */
import type { DoctorFinding, DoctorReport } from '../contract';

const MARK: Record<DoctorFinding['status'], string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' };

/** Groups in a stable order: the kernel and relay first, then each interface, then live connections and speed. */
export function groupFindings(findings: DoctorFinding[]): { title: string; findings: DoctorFinding[] }[] {
  const groups = new Map<string, DoctorFinding[]>();
  const titleOf = (f: DoctorFinding): string => {
    if (f.subject) return f.subject;
    const head = f.check.split('.')[0];
    return head === 'kernel' ? 'kernel' : head === 'relay' || head === 'target' ? 'relay' : head === 'live' ? 'live connections' : head === 'speed' ? 'speed' : 'general';
  };
  for (const f of findings) {
    const t = titleOf(f);
    if (!groups.has(t)) groups.set(t, []);
    groups.get(t)!.push(f);
  }
  const order = (t: string): number => ['kernel', 'relay', 'general'].indexOf(t) >= 0 ? ['kernel', 'relay', 'general'].indexOf(t) : t === 'live connections' ? 100 : t === 'speed' ? 101 : 10;
  return [...groups.entries()].sort((a, b) => order(a[0]) - order(b[0])).map(([title, list]) => ({ title, findings: list }));
}

export function formatReport(r: DoctorReport): string {
  const lines: string[] = [];
  for (const g of groupFindings(r.findings)) {
    lines.push(g.title);
    for (const f of g.findings) {
      lines.push(`  ${MARK[f.status]}  ${f.message}`);
      if (f.fix && f.status !== 'ok') lines.push(`        fix: ${f.fix}`);
    }
  }
  if (r.speed) {
    lines.push(`speed (each path alone, then all together, via the ${r.speed.via === 'relay' ? 'relay' : 'URL'}; Mbit/s down / up)`);
    const w = Math.max(10, ...r.speed.paths.map((p) => p.path.length));
    const n = (v: number | null): string => (v === null ? '–' : v.toFixed(1)).padStart(6);
    for (const p of r.speed.paths) lines.push(`  ${p.path.padEnd(w)} ${n(p.downMbit)} / ${n(p.upMbit)}`);
    lines.push(`  ${'together'.padEnd(w)} ${n(r.speed.all.downMbit)} / ${n(r.speed.all.upMbit)}`);
    lines.push(`  ${r.speed.summary}`);
  }
  const failing = r.findings.filter((f) => f.status === 'fail');
  const warnings = r.findings.filter((f) => f.status === 'warn').length;
  lines.push(failing.length
    ? `${failing.length} problem${failing.length === 1 ? '' : 's'} keep${failing.length === 1 ? 's' : ''} Braid from using every path${warnings ? ` (and ${warnings} warning${warnings === 1 ? '' : 's'})` : ''}.`
    : `Nothing found that keeps Braid from using every path${warnings ? ` (${warnings} warning${warnings === 1 ? '' : 's'})` : ''}.`);
  return lines.join('\n') + '\n';
}

/**
 * Bytes per program per path since start: what the stats engine attributes to each connection,
 * summed by the program that opened it (proxy/program.ts). A host can run many programs; beyond
 * MAX_PROGRAMS the rest are summed as one, so the table stays bounded.
 */

/** Bytes a program's connections moved on one path since start (proxy-counted, split by subflow). */
export interface ProgramPathTotals {
  program: string;
  path: string;
  up: number;
  down: number;
}

/** Programs kept apart in the per-program totals; beyond this the rest are summed as one. */
const MAX_PROGRAMS = 256;
const OTHER_PROGRAMS = '(others)';
/** A connection whose program is not known (a client on another host, or not found). */
export const NO_PROGRAM = '(unknown)';

export class ProgramTotals {
  /** program -> path -> bytes */
  private readonly programs = new Map<string, Map<string, { up: number; down: number }>>();

  add(program: string, path: string, up: number, down: number): void {
    let m = this.programs.get(program);
    if (!m) {
      if (this.programs.size >= MAX_PROGRAMS) return this.add(OTHER_PROGRAMS, path, up, down);
      this.programs.set(program, (m = new Map()));
    }
    const t = m.get(path);
    if (t) {
      t.up += up;
      t.down += down;
    } else m.set(path, { up, down });
  }

  /** Biggest first. */
  list(): ProgramPathTotals[] {
    const out: ProgramPathTotals[] = [];
    for (const [program, m] of this.programs) for (const [path, t] of m) out.push({ program, path, up: t.up, down: t.down });
    return out.sort((a, b) => b.up + b.down - (a.up + a.down));
  }
}

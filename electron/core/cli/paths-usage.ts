/**
 * `braid paths cap IFACE 2GB/month [--reset-day N] [--at-cap backup|off]`, `braid paths cap IFACE
 * none` and `braid paths usage [--json]`: data caps are config (`paths.caps`, followed by a running
 * braid as the file changes); usage is what a running braid counts, asked through its control API,
 * or read from the state directory when none runs.
 */
import { updateConfigFile } from '../config/load';
import { validateCaps } from '../config/schema';
import type { DataCapView, PathQualityView, PathUsageView, UsageView } from '../contract';
import { callControl, readEndpoint } from '../control/discovery';
import { capPeriod, formatCap, formatSize, parseCap, type DataCap } from '../paths/caps';
import { readUsage } from '../paths/usage';
import type { PathsConfig } from '../paths/policy';
import { str, usageError, type Values } from './common';

export const CAP_USAGE = 'braid paths cap IFACE SIZE/day|SIZE/month [--reset-day N] [--at-cap backup|off] | braid paths cap IFACE none';

/** Parses `braid paths cap` arguments into the cap to save (null: remove). */
export function capFromArgs(args: string[], values: Values): { iface: string; cap: DataCap | null } {
  const [iface, spec] = args;
  if (!iface || !spec || args.length !== 2) throw usageError(`usage: ${CAP_USAGE}`);
  if (!/^[^\s/]{1,15}$/.test(iface)) throw usageError(`'${iface}' is not an interface name`);
  const resetText = str(values, 'reset-day');
  const atCap = str(values, 'at-cap');
  if (spec === 'none') {
    if (resetText !== undefined || atCap !== undefined) throw usageError('--reset-day and --at-cap go with a cap, not with none');
    return { iface, cap: null };
  }
  let parsed: ReturnType<typeof parseCap>;
  try {
    parsed = parseCap(spec);
  } catch (err) {
    throw usageError((err as Error).message);
  }
  if (resetText !== undefined && parsed.period !== 'month') throw usageError('--reset-day is for monthly caps (SIZE/month)');
  if (resetText !== undefined && (!/^\d{1,2}$/.test(resetText) || Number(resetText) < 1 || Number(resetText) > 31)) {
    throw usageError(`--reset-day must be a day of the month from 1 to 31, got '${resetText}'`);
  }
  if (atCap !== undefined && atCap !== 'backup' && atCap !== 'off') throw usageError(`--at-cap must be 'backup' or 'off', got '${atCap}'`);
  return { iface, cap: { ...parsed, resetDay: resetText === undefined ? 1 : Number(resetText), atCap: (atCap as 'backup' | 'off' | undefined) ?? 'off' } };
}

export function saveCap(file: string, iface: string, cap: DataCap | null): PathsConfig {
  return updateConfigFile(file, (cur) => {
    const caps = { ...(cur.paths?.caps ?? {}) } as Record<string, DataCap>;
    if (cap === null) delete caps[iface];
    else caps[iface] = cap;
    return { ...cur, paths: { ...cur.paths, caps: validateCaps(caps, 'paths.caps') } };
  }).paths;
}

/** Usage as the running braid counts it, or from the state directory's file when none answers. */
export async function currentUsage(stateDir: string, caps: Record<string, DataCap>): Promise<UsageView & { live: boolean }> {
  try {
    const view = await callControl<UsageView>(readEndpoint(stateDir), 'paths.usage', {}, 2000);
    return { ...view, live: true };
  } catch {
    /* none running (or an older one): the file */
  }
  const meter = readUsage(stateDir);
  const now = meter.now();
  const names = new Set([...meter.interfaces(), ...Object.keys(caps)]);
  const interfaces = [...names].sort().map((name): PathUsageView => {
    const day = capPeriod({ period: 'day', resetDay: 1 }, now);
    const today = meter.between(name, day.from, day.from);
    const cap = caps[name] ?? null;
    const p = cap ? capPeriod(cap, now) : day;
    const b = meter.between(name, p.from, day.from);
    const reachedKey = meter.reached.get(name);
    return { name, today, cap, used: b.up + b.down, from: p.from, until: p.until, reached: !!cap && reachedKey?.startsWith(`${p.from}|${cap.bytes}|`) === true };
  });
  return { interfaces, days: meter.history(), live: false };
}

/** Quality per path from a running braid; empty when none runs. */
export async function currentQuality(stateDir: string): Promise<Record<string, PathQualityView>> {
  try {
    return await callControl<Record<string, PathQualityView>>(readEndpoint(stateDir), 'paths.quality', {}, 2000);
  } catch {
    return {};
  }
}

const pct = (a: number, b: number): string => `${Math.min(999, Math.round((100 * a) / b))} %`;

export function formatUsage(u: UsageView & { live: boolean }): string {
  if (u.interfaces.length === 0) return 'no data counted yet (Braid counts what its connections carry on each interface)\n';
  const rows = [['INTERFACE', 'TODAY ↓', 'TODAY ↑', 'CAP', 'USED IN PERIOD', 'PERIOD']];
  for (const i of u.interfaces) {
    rows.push([
      i.name,
      formatSize(i.today.down),
      formatSize(i.today.up),
      i.cap ? `${formatCap(i.cap)}${i.cap.period === 'month' ? ` (resets day ${i.cap.resetDay})` : ''}, then ${i.cap.atCap}` : '-',
      i.cap ? `${formatSize(i.used)} (${pct(i.used, i.cap.bytes)})${i.reached ? ' REACHED' : ''}` : '-',
      i.cap ? `${i.from} .. ${i.until}` : '-',
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  '));
  if (!u.live) lines.push('', 'no braid answers here: figures from the state directory (up to a few seconds behind a braid that stopped)');
  return lines.join('\n') + '\n';
}

export const capText = (c: DataCapView): string => `${formatCap(c)}${c.period === 'month' ? `, reset on day ${c.resetDay}` : ''}, ${c.atCap} at the cap`;

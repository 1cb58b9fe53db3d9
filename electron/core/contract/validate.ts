/**
 * A few composable runtime checks, enough to validate command parameters where they enter (HTTP,
 * WebSocket, IPC) with messages that name the field. Pure TypeScript: the renderer bundles it too.
 */
export class ValidationError extends Error {
  readonly code = 'EBADPARAMS';
  constructor(readonly field: string, message: string) {
    super(field ? `'${field}' ${message}` : message);
  }
}

export type Check<T> = (value: unknown, field: string) => T;
export type Checked<C> = C extends Check<infer T> ? T : never;

export const str = (opts: { min?: number; max?: number; pattern?: RegExp } = {}): Check<string> => (v, f) => {
  if (typeof v !== 'string') throw new ValidationError(f, `must be a string, got ${describe(v)}`);
  if (v.length < (opts.min ?? 0)) throw new ValidationError(f, `must be at least ${opts.min} characters`);
  if (v.length > (opts.max ?? 4096)) throw new ValidationError(f, `must be at most ${opts.max ?? 4096} characters`);
  if (opts.pattern && !opts.pattern.test(v)) throw new ValidationError(f, `has an invalid format`);
  return v;
};

export const int = (min: number, max: number): Check<number> => (v, f) => {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new ValidationError(f, `must be an integer, got ${describe(v)}`);
  if (v < min || v > max) throw new ValidationError(f, `must be from ${min} to ${max}, got ${v}`);
  return v;
};

export const bool: Check<boolean> = (v, f) => {
  if (typeof v !== 'boolean') throw new ValidationError(f, `must be true or false, got ${describe(v)}`);
  return v;
};

export const oneOf = <T extends string>(values: readonly T[]): Check<T> => (v, f) => {
  if (typeof v !== 'string' || !values.includes(v as T)) throw new ValidationError(f, `must be one of ${values.join(', ')}, got ${describe(v)}`);
  return v as T;
};

export const optional = <T>(c: Check<T>): Check<T | undefined> => (v, f) => (v === undefined ? undefined : c(v, f));

export const arrayOf = <T>(item: Check<T>, max: number): Check<T[]> => (v, f) => {
  if (!Array.isArray(v)) throw new ValidationError(f, `must be a list, got ${describe(v)}`);
  if (v.length > max) throw new ValidationError(f, `must have at most ${max} entries`);
  return v.map((x, i) => item(x, `${f}[${i}]`));
};

/** Anything JSON-shaped (validated deeper by whoever consumes it, e.g. the config schema). */
export const json: Check<unknown> = (v) => v;

export const obj = <S extends Record<string, Check<unknown>>>(shape: S): Check<{ [K in keyof S]: Checked<S[K]> }> => (v, f) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ValidationError(f, `must be an object, got ${describe(v)}`);
  const rec = v as Record<string, unknown>;
  for (const k of Object.keys(rec)) {
    if (!(k in shape)) throw new ValidationError(f ? `${f}.${k}` : k, `is not a known parameter (known: ${Object.keys(shape).join(', ') || 'none'})`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, c] of Object.entries(shape)) {
    const val = c(rec[k], f ? `${f}.${k}` : k);
    if (val !== undefined) out[k] = val;
  }
  return out as { [K in keyof S]: Checked<S[K]> };
};

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  return typeof v === 'object' ? 'an object' : String(v);
}

/** What every `braid` subcommand shares: its shape in the command table, logging, flag parsing. */
import type { ParseArgsConfig } from 'node:util';
import { BraidError } from '../errors';
import { describeRecovery, recoverLeftovers } from '../guardian/recover';
import type { Logger } from '../proxy/session';

/** Exit codes: 0 done, 1 runtime failure, 2 bad usage or config. */
export const EXIT_USAGE = 2;
export const EXIT_FAILURE = 1;

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  summary: string;
  usage: string;
  /** More lines for `braid <command> --help`: what a flag does where the usage line cannot say. */
  details?: string[];
  options: Options;
  positionals?: boolean;
  /** Takes its arguments unparsed (`braid run` passes a program's own flags through). */
  raw?: boolean;
  run(values: Values, positionals: string[]): Promise<number>;
}

export function usageError(message: string): BraidError {
  return new BraidError('EUSAGE', message);
}

export function stderrLogger(verbose: boolean): Logger {
  const line = (level: string, msg: string): void => void process.stderr.write(`braid: ${level}${msg}\n`);
  return {
    info: (m) => verbose && line('', m),
    warn: (m) => line('warning: ', m),
    debug: (m) => verbose && line('debug: ', m),
  };
}

export function parsePort(text: string, flag: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw usageError(`--${flag} must be a port number from 0 to 65535, got '${text}'`);
  return Number(text);
}

/** "HOST:PORT" or "[V6]:PORT" as given to --listen and the like. */
export function parseHostPort(text: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) throw usageError(`--${flag} must be HOST:PORT (IPv6 as [ADDR]:PORT), got '${text}'`);
  return { host: m[1] ?? m[2], port: parsePort(m[3], flag) };
}

export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function list(values: Values, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

/** Resolves with an exit code once SIGINT/SIGTERM arrives and `stop` finished (or timed out). */
export function untilSignal(stop: () => Promise<void>, log: Logger, forceMs = 5000): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log.info(`${sig}: shutting down`);
      // A stuck close must not keep the process around forever.
      const force = setTimeout(() => resolve(EXIT_FAILURE), forceMs);
      force.unref();
      stop().then(
        () => {
          clearTimeout(force);
          resolve(0);
        },
        (err) => {
          log.warn(`stop failed: ${(err as Error).message}`);
          resolve(EXIT_FAILURE);
        },
      );
    };
    // Kept (not once): under `npm run`, a Ctrl-C reaches braid twice (from the terminal and as
    // forwarded by npm), and a second SIGINT with no listener would kill it mid-shutdown. The
    // shutdown is bounded by forceMs anyway.
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * Every start of Braid, whatever the command: what a Braid that died left changed on the system is
 * put back (or was, by its guardian), and the user is told once.
 */
export async function recoverAtStart(stateDir: string, log: Logger): Promise<void> {
  for (const r of await recoverLeftovers(stateDir, { log })) log.warn(describeRecovery(r));
}

/**
 * Node prints some process warnings straight to the terminal, in its own format. The one an
 * ordinary user of Braid could meet is MaxListenersExceededWarning ("possible memory leak"), which
 * Node raises on the eleventh listener of one event, whether or not anything leaks. Its cause in
 * Braid (a listener per connection on a signal every connection shared) is gone; should another
 * one appear it goes to Braid's log at debug level (visible with --verbose), once per kind, instead
 * of the user's terminal. Every other warning keeps Node's default handling.
 */
import type { Logger } from './proxy/session';

type WarningListener = (warning: Error) => void;

let installed: { log: Logger; defaults: WarningListener[] } | null = null;
const seen = new Set<string>();

/** Installs the routing once per process; a later call only changes the logger. */
export function routeProcessWarnings(log: Logger): void {
  if (installed) {
    installed.log = log;
    return;
  }
  // Node's own printer is a 'warning' listener installed at start-up (absent with --no-warnings).
  const defaults = process.listeners('warning') as WarningListener[];
  for (const l of defaults) process.removeListener('warning', l);
  installed = { log, defaults };
  process.on('warning', (warning: Error) => {
    if (warning.name !== 'MaxListenersExceededWarning') {
      for (const l of installed!.defaults) l(warning);
      return;
    }
    // "11 abort listeners added to [AbortSignal]": the count varies, the emitter and event do not.
    const kind = warning.message.replace(/\d+/g, 'N');
    if (seen.has(kind)) return;
    seen.add(kind);
    installed!.log.debug(`node: ${warning.name}: ${warning.message}`);
  });
}

/**
 * Restores the system proxy in-process when the process is asked to end (SIGINT/SIGTERM/SIGHUP) or
 * runs out of work. Every other way of ending (SIGKILL, process.exit() from elsewhere, a crash) is
 * the guardian's (../guardian/guardian.ts): it restores from the journal the moment this process is
 * gone, so no synchronous last resort is needed here.
 */
import os from 'node:os';
import { errorMessage } from '../errors';
import type { SysproxyLog, SystemProxyManager } from './manager';

export interface RestoreHookOptions {
  log?: SysproxyLog;
  /** Upper bound on an asynchronous restore before the process is let go (the guardian finishes). */
  timeoutMs?: number;
  signals?: NodeJS.Signals[];
}

const DEFAULT_SIGNALS: NodeJS.Signals[] = process.platform === 'win32' ? ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] : ['SIGINT', 'SIGTERM', 'SIGHUP'];

function withTimeout<T>(p: Promise<T>, ms: number): Promise<{ done: true; value: T } | { done: false }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve({ done: false }), ms);
    p.then(
      (value) => {
        clearTimeout(t);
        resolve({ done: true, value });
      },
      (err) => {
        clearTimeout(t);
        reject(err);
      },
    );
  });
}

/**
 * Returns a function that removes the hooks. On a signal the proxy settings are restored first;
 * then, if nothing else in the process listens for that signal, the signal is raised again so the
 * process ends the way it would have without Braid (exit status 128+n). If something else listens
 * (the CLI's graceful stop), that listener decides when to exit, and the guardian finishes any
 * restore still under way.
 */
export function installRestoreHooks(manager: SystemProxyManager, opts: RestoreHookOptions = {}): () => void {
  const log = opts.log ?? { info: () => {}, warn: () => {} };
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const signals = opts.signals ?? DEFAULT_SIGNALS;
  let restoring: Promise<void> | null = null;

  const restoreAsync = (why: string): Promise<void> => {
    restoring ??= (async () => {
      try {
        const r = await withTimeout(manager.disable(), timeoutMs);
        if (!r.done) log.warn(`system proxy: restoring took over ${timeoutMs} ms after ${why}; the guardian finishes it when Braid exits`);
      } catch (err) {
        log.warn(`system proxy: restoring after ${why} failed: ${errorMessage(err)}; it will be retried at the next start`);
      }
    })();
    return restoring;
  };

  const onSignal = (sig: NodeJS.Signals): void => {
    const othersListen = process.listenerCount(sig) > 1;
    if (restoring && !othersListen) {
      // A second Ctrl-C: stop waiting. The guardian restores once the process is gone.
      process.exit(128 + (os.constants.signals[sig] ?? 0));
    }
    void restoreAsync(sig).then(() => {
      if (othersListen) return;
      uninstall();
      process.kill(process.pid, sig);
      // Where re-raising does not end the process (Windows), exit with the conventional status.
      setTimeout(() => process.exit(128 + (os.constants.signals[sig] ?? 0)), 1000).unref();
    });
  };

  const onBeforeExit = (): void => {
    if (manager.active && !restoring) void restoreAsync('the event loop emptied');
  };



  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const sig of signals) {
    const h = (): void => onSignal(sig);
    handlers.set(sig, h);
    process.on(sig, h);
  }
  process.on('beforeExit', onBeforeExit);

  let installed = true;
  function uninstall(): void {
    if (!installed) return;
    installed = false;
    for (const [sig, h] of handlers) process.off(sig, h);
    process.off('beforeExit', onBeforeExit);
  }
  return uninstall;
}

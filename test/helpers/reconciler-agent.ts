/**
 * Runs the path reconciler against the real kernel inside a network namespace, for
 * test/paths-kernel.test.ts (netlink acts in the caller's namespace, so the code under test has to
 * run in there). Requests on stdin, one JSON object a line; one JSON answer a line on stdout:
 *
 *   {op: 'open', stateFile}   a new Reconciler on the real mptcp_pm (adopting what the file names)
 *   {op: 'apply', config}     reconcile the namespace's interfaces (inventory snapshot) with the
 *                             default paths config overlaid with `config`; answers the report
 *   {op: 'cleanup'}           remove what it created, put back limits it raised; answers the report
 *   {op: 'owned'}             what it believes it owns
 *
 * Answers: {ok: true, value} or {ok: false, code, message}. Exits when stdin closes.
 */
import readline from 'node:readline';
import { netlinkApi as kernel } from '../../electron/core/paths/endpoint-api';
import { snapshot } from '../../electron/core/paths/inventory';
import { defaultPathsConfig, type PathsConfig } from '../../electron/core/paths/policy';
import { Reconciler } from '../../electron/core/paths/reconcile';

// The same calls PathManager makes (electron/core/paths/endpoint-api.ts).
let reconciler: Reconciler | null = null;

function handle(req: Record<string, unknown>): unknown {
  switch (req.op) {
    case 'open':
      reconciler = new Reconciler(kernel, typeof req.stateFile === 'string' ? req.stateFile : null);
      return [...reconciler.owned.values()];
    case 'apply': {
      const config: PathsConfig = { ...defaultPathsConfig(), ...(req.config as Partial<PathsConfig>) };
      return need().apply(snapshot(), config);
    }
    case 'cleanup': return need().cleanup();
    case 'owned': return [...need().owned.values()];
    default: throw Object.assign(new Error(`unknown op ${String(req.op)}`), { code: 'ENOOP' });
  }
}

function need(): Reconciler {
  if (!reconciler) throw Object.assign(new Error('open first'), { code: 'ENOTOPEN' });
  return reconciler;
}

const out = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n'); };

readline.createInterface({ input: process.stdin })
  .on('line', (line) => {
    try {
      out({ ok: true, value: handle(JSON.parse(line) as Record<string, unknown>) });
    } catch (err) {
      const e = err as { code?: unknown; message?: string };
      out({ ok: false, code: String(e.code ?? 'ENOCODE'), message: String(e.message) });
    }
  })
  .on('close', () => process.exit(0));
out({ ready: true });

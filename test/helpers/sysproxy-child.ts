/**
 * A Braid-like process for the system-proxy tests, run with GSETTINGS_BACKEND=keyfile and a
 * temporary XDG_CONFIG_HOME in its environment so only a throwaway keyfile is ever touched.
 *   --mode hold     enable, print "enabled", wait (to be killed with SIGKILL)
 *   --mode hooks    what `braid up --system-proxy` does (startDesktopRuntime): recover, then point the
 *                   system at the proxy through DesktopSystemProxy with the restore hooks installed;
 *                   print "enabled", wait
 *   --mode hooks-other  as hooks, plus a SIGTERM listener of its own that exits at once, as the
 *                   CLI's graceful stop may, before the asynchronous restore is done
 *   --mode hooks-idle  as hooks, then lets the event loop empty (beforeExit must restore)
 *   --mode recover  recoverAfterCrash() as a fresh start does, print the outcome, exit
 */
import { parseArgs } from 'node:util';
import { DesktopSystemProxy } from '../../electron/core/desktop/system-proxy-control';
import { installRestoreHooks } from '../../electron/core/sysproxy/hooks';
import { enableGuardian } from '../../electron/core/guardian/guardian';
import { GnomeBackend } from '../../electron/core/sysproxy/gnome';
import { SystemProxyManager } from '../../electron/core/sysproxy/manager';

const { values } = parseArgs({ options: { state: { type: 'string' }, mode: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' } } });
const stateDir = values.state!;
const port = Number(values.port ?? 1080);
const host = values.host ?? '127.0.0.1';
const log = { info: (m: string) => void process.stderr.write(`info: ${m}\n`), warn: (m: string) => void process.stderr.write(`warn: ${m}\n`) };
const backend = new GnomeBackend();

async function main(): Promise<void> {
  // `node --test dist/test/` also runs every file under test/, helpers included: bare, do nothing.
  if (values.mode === undefined) return;
  // Never anyone's real desktop settings, whoever runs this by hand.
  if (process.env.GSETTINGS_BACKEND !== 'keyfile' || !process.env.XDG_CONFIG_HOME || !stateDir) {
    throw new Error('run only with GSETTINGS_BACKEND=keyfile, a temporary XDG_CONFIG_HOME and --state DIR');
  }
  // It stands for a Braid process, guardian included.
  enableGuardian();
  // Whatever happens, this helper must not outlive a test that forgot it.
  setTimeout(() => process.exit(99), 60_000).unref();
  const keepAlive = (): void => void setInterval(() => {}, 1000);
  switch (values.mode) {
    case 'hold': {
      await new SystemProxyManager({ backend, stateDir, log }).enable({ host, port, bypass: ['localhost', '127.0.0.0/8'] });
      process.stdout.write('enabled\n');
      keepAlive();
      return;
    }
    case 'hooks':
    case 'hooks-other':
    case 'hooks-idle': {
      const manager = new SystemProxyManager({ backend, stateDir, log });
      await manager.recoverAfterCrash();
      await new DesktopSystemProxy({ manager, proxyAddress: () => ({ address: host, port }), bypass: ['localhost', '127.0.0.0/8'], log }).set(true);
      installRestoreHooks(manager, { log });
      if (values.mode === 'hooks-other') process.on('SIGTERM', () => process.exit(0));
      process.stdout.write('enabled\n');
      if (values.mode !== 'hooks-idle') keepAlive();
      return;
    }
    case 'recover': {
      const outcome = await new SystemProxyManager({ backend, stateDir, log }).recoverAfterCrash();
      process.stdout.write(`${outcome}\n`);
      return;
    }
    default:
      throw new Error(`unknown --mode ${values.mode}`);
  }
}

main().catch((err) => {
  process.stderr.write(`sysproxy-child: ${(err as Error).message} [${(err as { code?: string }).code}]\n`);
  process.exit(1);
});

/**
 * `braid helper`: the privileged helper (CAP_NET_ADMIN only), as a system service, so that the
 * desktop app and `braid up` never run as root. It applies transparent-mode rules for local users,
 * each for their own traffic and only while their Braid runs, and with `--paths-config` it also
 * runs path management (what `braid paths daemon` does) from that policy file.
 */
import { defaultStateDir } from '../config/locations';
import { BraidError } from '../errors';
import { hasNetAdmin, type PathManager } from '../paths/manager';
import { helperSocketPath } from '../privileged/protocol';
import { HelperServer } from '../privileged/server';
import { recoverAtStart, stderrLogger, str, untilSignal, type Command, type Values } from './common';
import { startPathsDaemon } from './paths';

async function runHelper(values: Values): Promise<number> {
  if (!hasNetAdmin()) throw new BraidError('EPERM', 'braid helper needs CAP_NET_ADMIN (run it as root, or from build/linux/braid-helper.service)');
  const log = stderrLogger(values.verbose === true);
  const stateDir = str(values, 'state-dir') ?? defaultStateDir();
  await recoverAtStart(stateDir, log);
  const socketPath = str(values, 'socket') ?? helperSocketPath();
  let paths: PathManager | null = null;
  // Per-connection wishes of unprivileged Braids go to the path manager of --paths-config.
  const server = new HelperServer({ socketPath, stateDir, log, paths: () => paths?.upm ?? null });
  await server.start();
  // Handled before the ready line: a SIGTERM right after it must still stop the helper cleanly.
  let stopPaths = (): void => {};
  const stopped = untilSignal(async () => {
    stopPaths();
    await server.stop();
  }, log);
  process.stdout.write(`braid: helper listening on ${socketPath} (transparent-mode rules for local users, each for their own traffic)\n`);
  const pathsConfig = str(values, 'paths-config');
  if (pathsConfig) stopPaths = startPathsDaemon(pathsConfig, stateDir, log, (m) => (paths = m));
  return stopped;
}

export const helper: Command = {
  summary: 'the privileged helper: transparent-mode rules for unprivileged braid (and path management with --paths-config)',
  usage: 'braid helper [--socket PATH] [--paths-config FILE] [--state-dir DIR] [--verbose]',
  options: {
    socket: { type: 'string' },
    'paths-config': { type: 'string' },
    'state-dir': { type: 'string' },
    verbose: { type: 'boolean', short: 'v' },
    help: { type: 'boolean', short: 'h' },
  },
  run: runHelper,
};

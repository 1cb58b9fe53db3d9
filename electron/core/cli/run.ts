/**
 * `braid run [--state-dir DIR] [--] CMD ARGS…`: one program, and everything it starts, with all its
 * TCP through the running `braid up` — the per-app way, like `mptcpize run`, proxychains or
 * torsocks, but by the kernel's redirect rather than by preloading a library, so statically linked
 * programs and Go binaries are covered too.
 *
 * How: this process moves itself into a new cgroup v2 under its own, asks the running Braid
 * (control API) to redirect that cgroup's TCP (an nftables `socket cgroupv2` rule), then starts the
 * program, which inherits the cgroup. When the program ends, the rule and the cgroup go, and the
 * exit status is the program's. Its own failures use the status codes of env(1): 125 (braid run
 * itself), 126 (cannot execute), 127 (not found).
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import { defaultStateDir } from '../config/locations';
import { callControl, readEndpoint, type ControlEndpoint } from '../control/discovery';
import { errorCode, errorMessage } from '../errors';
import { enterNewScope, type Scope } from '../transparent/cgroup';
import type { Command, Values } from './common';

const EXIT_RUN_FAILED = 125;
const EXIT_CANNOT_EXECUTE = 126;
const EXIT_NOT_FOUND = 127;
const USAGE = 'braid run [--state-dir DIR] [--] CMD [ARGS…]';

function fail(message: string, code = EXIT_RUN_FAILED): number {
  process.stderr.write(`braid run: ${message}\n`);
  return code;
}

/** braid run's own options end at `--` or at the first word that is not one of them: the rest is the program's. */
function split(argv: string[]): { stateDir: string | undefined; help: boolean; cmd: string[] } | string {
  let stateDir: string | undefined;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return { stateDir, help: false, cmd: argv.slice(i + 1) };
    if (a === '--help' || a === '-h') return { stateDir, help: true, cmd: [] };
    if (a === '--state-dir') {
      stateDir = argv[++i];
      if (stateDir === undefined) return 'option --state-dir needs a value';
      continue;
    }
    if (a.startsWith('--state-dir=')) {
      stateDir = a.slice('--state-dir='.length);
      continue;
    }
    if (a.startsWith('-')) return `unknown option ${a} for 'braid run' (put the program after --)`;
    break;
  }
  return { stateDir, help: false, cmd: argv.slice(i) };
}

async function runProgram(argv: string[]): Promise<number> {
  const parsed = split(argv);
  if (typeof parsed === 'string') return fail(`${parsed}\nusage: ${USAGE}`, 2);
  if (parsed.help) {
    process.stdout.write(`usage: ${USAGE}\nrun a program with all of its TCP through the running braid up\n`);
    return 0;
  }
  if (parsed.cmd.length === 0) return fail(`which program? usage: ${USAGE}`, 2);

  let ep: ControlEndpoint;
  try {
    ep = readEndpoint(parsed.stateDir ?? defaultStateDir());
    await callControl(ep, 'status', {}, 3000);
  } catch (err) {
    return fail(`no running braid to send the program's traffic through (${errorMessage(err)}); start one with \`npm run braid -- up\` first`);
  }

  let scope: Scope;
  try {
    scope = enterNewScope(`braid-run-${process.pid}`);
  } catch (err) {
    return fail(errorMessage(err));
  }
  let id: number;
  try {
    ({ id } = await callControl<{ id: number }>(ep, 'run.attach', { cgroup: scope.ref.path, level: scope.ref.level, pid: process.pid }, 10_000));
  } catch (err) {
    scope.close();
    return fail(`braid did not take the program's traffic: ${errorMessage(err)} [${errorCode(err)}]`);
  }

  const [cmd, ...args] = parsed.cmd as [string, ...string[]];
  const status = await new Promise<number>((resolve) => {
    const child = spawn(cmd, args, { stdio: 'inherit' });
    const forward = (sig: NodeJS.Signals): void => void child.kill(sig);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
    for (const s of signals) process.on(s, forward);
    child.once('error', (err) => {
      const code = errorCode(err);
      resolve(fail(`${cmd}: ${code === 'ENOENT' ? 'command not found' : errorMessage(err)}`, code === 'ENOENT' ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE));
    });
    child.once('exit', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      resolve(code ?? 128 + (signal ? os.constants.signals[signal] ?? 0 : 0));
    });
  });

  try {
    await callControl(ep, 'run.detach', { id }, 5000);
  } catch {
    /* braid up prunes the rule of an empty cgroup itself */
  }
  if (!scope.close()) process.stderr.write(`braid run: the cgroup ${scope.dir} still holds processes the program left running; it goes when they end\n`);
  return status;
}

export const run: Command = {
  summary: 'run one program with all of its TCP through the running braid up (by cgroup, nftables)',
  usage: USAGE,
  options: {},
  raw: true,
  run: (_values: Values, positionals: string[]) => runProgram(positionals),
};

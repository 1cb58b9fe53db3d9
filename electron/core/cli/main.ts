#!/usr/bin/env node
/**
 * `braid`: the headless command line. Subcommands live in one table so that relay, paths and
 * status slot in beside `up` without touching the dispatcher.
 */
import { parseArgs } from 'node:util';
import { errorCode, errorMessage } from '../errors';
import { enableGuardian } from '../guardian/guardian';
import { prepareLongRunningProcess } from '../process-setup';
import { EXIT_FAILURE, EXIT_USAGE, stderrLogger, type Command, type Values } from './common';
import { paths } from './paths';
import { relay } from './relay';
import { run } from './run';
import { doctor } from './doctor';
import { helper } from './helper';
import { status } from './status';
import { up } from './up';

const COMMANDS: Record<string, Command> = { up, status, paths, relay, run, helper, doctor };

function helpText(): string {
  const lines = ['usage: braid <command> [options]', '', 'commands:'];
  for (const [name, cmd] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(8)} ${cmd.summary}`, `           ${cmd.usage}`);
  lines.push('', 'braid --help, braid <command> --help: this text');
  return lines.join('\n') + '\n';
}

/** Turns parseArgs' messages into ones that name the flag plainly. */
function describeParseError(err: unknown, command: string): string {
  const code = errorCode(err);
  const msg = errorMessage(err);
  const flag = /'(-{1,2}[^' ]+)/.exec(msg)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag) return `unknown option ${flag} for 'braid ${command}'`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) return `option ${flag} needs a value`;
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument for 'braid ${command}': ${msg}`;
  return msg;
}

/**
 * `--port -1`, `--secret -Yu1…`: parseArgs takes a value that starts with '-' for another option and
 * reports the flag as missing its value. A string flag's next argument that is not one of this
 * command's options is its value (a negative number, or a secret: base64url has '-'), so it is
 * joined to its flag (`--port=-1`) and the flag's own check says what is wrong with it; `--port
 * --host` still says that --port needs a value.
 */
function joinNegativeValues(args: string[], options: Command['options']): string[] {
  const isOption = (arg: string): boolean => {
    const long = /^--([^=]+)/.exec(arg)?.[1];
    if (long !== undefined) return long in options || long === 'help';
    const short = /^-(.)$/.exec(arg)?.[1];
    return short !== undefined && (short === 'h' || Object.values(options).some((o) => o.short === short));
  };
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = /^--([^=]+)$/.exec(args[i]!)?.[1];
    const next = args[i + 1];
    if (name && options[name]?.type === 'string' && next !== undefined && next.length > 1 && next.startsWith('-') && !isOption(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else out.push(args[i]!);
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(helpText());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`braid: unknown command '${name}'\n\n${helpText()}`);
    return EXIT_USAGE;
  }
  if (cmd.raw) return cmd.run({}, rest);
  let values: Values;
  let positionals: string[];
  try {
    const parsed = parseArgs({ args: joinNegativeValues(rest, cmd.options), options: cmd.options, strict: true, allowPositionals: cmd.positionals === true });
    values = parsed.values as Values;
    positionals = parsed.positionals;
  } catch (err) {
    process.stderr.write(`braid: ${describeParseError(err, name)}\nusage: ${cmd.usage}\n`);
    return EXIT_USAGE;
  }
  if (values.help) {
    process.stdout.write(`usage: ${cmd.usage}\n${cmd.summary}\n${cmd.details ? `\n${cmd.details.join('\n')}\n` : ''}`);
    return 0;
  }
  // Before any config is read: the default connection limit follows the raised open-file limit.
  const log = stderrLogger(values.verbose === true);
  const fds = prepareLongRunningProcess(log);
  if (fds.error) log.warn(`${fds.error}; keeping ${fds.soft}`);
  else if (fds.raisedFrom !== null) log.debug(`open-file limit raised from ${fds.raisedFrom} to ${fds.soft}`);
  try {
    return await cmd.run(values, positionals);
  } catch (err) {
    const code = errorCode(err);
    process.stderr.write(`braid: ${errorMessage(err)}${code !== 'EUNKNOWN' ? ` [${code}]` : ''}\n`);
    return code === 'EUSAGE' || code === 'ECONFIG' ? EXIT_USAGE : EXIT_FAILURE;
  }
}

if (require.main === module) {
  // This process is Braid: whatever it changes on the system, a guardian puts back if it dies.
  enableGuardian();
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Whatever handles are left (none should be), the command is over.
      setImmediate(() => process.exit(code));
    },
    (err) => {
      process.stderr.write(`braid: ${errorMessage(err)}\n`);
      process.exit(EXIT_FAILURE);
    },
  );
}

#!/usr/bin/env node
/**
 * `braid`: the headless command line. Subcommands live in one table so that relay, paths and
 * status slot in beside `up` without touching the dispatcher.
 */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { loadConfig } from '../config/load';
import type { ConfigInput, DialMode } from '../config/schema';
import { BraidError, errorCode, errorMessage } from '../errors';
import { ProxyServer } from '../proxy/server';
import type { Logger } from '../proxy/session';

/** Exit codes: 0 done, 1 runtime failure, 2 bad usage or config. */
const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;

type Options = NonNullable<ParseArgsConfig['options']>;

interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(values: Record<string, string | boolean | undefined>): Promise<number>;
}

function usageError(message: string): BraidError {
  return new BraidError('EUSAGE', message);
}

function stderrLogger(verbose: boolean): Logger {
  const line = (level: string, msg: string): void => void process.stderr.write(`braid: ${level}${msg}\n`);
  return {
    info: (m) => verbose && line('', m),
    warn: (m) => line('warning: ', m),
    debug: (m) => verbose && line('debug: ', m),
  };
}

function parsePort(text: string, flag: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw usageError(`--${flag} must be a port number from 0 to 65535, got '${text}'`);
  return Number(text);
}

async function runUp(values: Record<string, string | boolean | undefined>): Promise<number> {
  const proxy: NonNullable<ConfigInput['proxy']> = {};
  if (typeof values.host === 'string') proxy.host = values.host;
  if (typeof values.port === 'string') proxy.port = parsePort(values.port, 'port');
  if (typeof values.dial === 'string') {
    if (values.dial !== 'mptcp' && values.dial !== 'tcp') throw usageError(`--dial must be 'mptcp' or 'tcp', got '${values.dial}'`);
    proxy.dial = values.dial as DialMode;
  }
  if (typeof values.auth === 'string') {
    const colon = values.auth.indexOf(':');
    if (colon <= 0 || colon === values.auth.length - 1) throw usageError(`--auth must be USER:PASS with both parts non-empty`);
    proxy.auth = { username: values.auth.slice(0, colon), password: values.auth.slice(colon + 1) };
  }
  const config = loadConfig({ file: typeof values.config === 'string' ? values.config : undefined, overrides: { proxy } });

  const log = stderrLogger(values.verbose === true);
  const server = new ProxyServer(config, { logger: log });
  server.tracker.on('closed', (c) => {
    const dest = c.destination ? `${c.destination.host}:${c.destination.port}${c.destination.address ? ` (${c.destination.address})` : ''}` : '-';
    log.info(`connection ${c.id} closed: ${c.protocol ?? 'unknown'} ${c.client.address}:${c.client.port} -> ${dest} transport ${c.transport} up ${c.bytesUp} down ${c.bytesDown}`);
  });
  const addr = await server.start();
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  process.stdout.write(`braid: proxy listening on ${host}:${addr.port} (socks5+http, dial ${server.dialMode})\n`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log.info(`${sig}: closing ${server.tracker.size} connection(s)`);
      // A stuck close must not keep the process around forever.
      const force = setTimeout(() => resolve(EXIT_FAILURE), 5000);
      force.unref();
      server.stop().then(
        () => {
          clearTimeout(force);
          resolve(0);
        },
        (err) => {
          log.warn(`stop failed: ${errorMessage(err)}`);
          resolve(EXIT_FAILURE);
        },
      );
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}

const COMMANDS: Record<string, Command> = {
  up: {
    summary: 'run the local SOCKS5 + HTTP proxy until SIGINT/SIGTERM',
    usage: 'braid up [--host H] [--port P] [--auth USER:PASS] [--dial mptcp|tcp] [--config FILE] [--verbose]',
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      auth: { type: 'string' },
      dial: { type: 'string' },
      config: { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    },
    run: runUp,
  },
};

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
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: rest, options: cmd.options, strict: true, allowPositionals: false }).values as typeof values;
  } catch (err) {
    process.stderr.write(`braid: ${describeParseError(err, name)}\nusage: ${cmd.usage}\n`);
    return EXIT_USAGE;
  }
  if (values.help) {
    process.stdout.write(`usage: ${cmd.usage}\n${cmd.summary}\n`);
    return 0;
  }
  try {
    return await cmd.run(values);
  } catch (err) {
    const code = errorCode(err);
    process.stderr.write(`braid: ${errorMessage(err)}${code !== 'EUNKNOWN' ? ` [${code}]` : ''}\n`);
    return code === 'EUSAGE' || code === 'ECONFIG' ? EXIT_USAGE : EXIT_FAILURE;
  }
}

if (require.main === module) {
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

/**
 * Where a secret given to the command line comes from. Anything in argv is readable by every local
 * user (`ps`, /proc/PID/cmdline), so the recommended ways carry none there: a file (`--relay-file`,
 * `--secret-file`), standard input (`--relay -`), the environment (BRAID_RELAY_SECRET), the config
 * file or the dashboard. A secret given in argv still works, with one warning saying so.
 */
import fs from 'node:fs';
import { errorMessage } from '../errors';
import type { Logger } from '../proxy/session';
import { parseRelayLink } from '../relay/share-link';
import { str, usageError, type Values } from './common';

/** A share link is well under this; anything bigger is not one. */
const MAX_SECRET_INPUT = 8192;

function firstLine(text: string): string {
  return text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '') ?? '';
}

/** The first non-empty line of FILE; a file other users can read gets a warning (it holds a secret). */
export function readSecretFile(file: string, flag: string, log: Logger): string {
  let text: string;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_SECRET_INPUT) throw new Error(`larger than ${MAX_SECRET_INPUT} bytes`);
    if (st.mode & 0o044) log.warn(`${file} is readable by other users and holds a secret: chmod 600 ${file}`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`${flag} ${file}: ${errorMessage(err)}`);
  }
  const line = firstLine(text);
  if (!line) throw usageError(`${flag} ${file}: the file is empty`);
  return line;
}

/** The first non-empty line on standard input (a pipe, or pasted at a terminal and ended with Enter). */
export function readSecretStdin(flag: string, input: NodeJS.ReadStream = process.stdin): Promise<string> {
  if (input.isTTY) process.stderr.write('braid: paste the relay link (braid://…) and press Enter: ');
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = (err: Error | null): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      // Nothing more is read from it: a terminal or a pipe left open must not keep braid reading.
      input.pause();
      input.destroy();
      if (err) return reject(err);
      const line = firstLine(text);
      if (!line) return reject(usageError(`${flag}: nothing on standard input (pipe the link in: … | braid up ${flag})`));
      resolve(line);
    };
    const onData = (chunk: string): void => {
      text += chunk;
      if (text.length > MAX_SECRET_INPUT) return finish(usageError(`${flag}: more than ${MAX_SECRET_INPUT} bytes on standard input`));
      if (firstLine(text) && /\n/.test(text)) finish(null);
    };
    const onEnd = (): void => finish(null);
    const onError = (err: Error): void => finish(usageError(`${flag}: cannot read standard input: ${errorMessage(err)}`));
    input.setEncoding('utf8');
    input.on('data', onData);
    input.once('end', onEnd);
    input.once('error', onError);
  });
}

export function warnSecretInArgv(log: Logger, what: string, instead: string): void {
  log.warn(`${what} on the command line is visible to every local user in the process list (ps, /proc/PID/cmdline); use ${instead} instead`);
}

/**
 * `braid up`'s relay link: `--relay LINK` (warned), `--relay -` (standard input) or
 * `--relay-file FILE`; null when none was given. `flag` names the source in later errors.
 */
export async function relayLinkFromFlags(values: Values, log: Logger): Promise<{ link: string; flag: string } | null> {
  const given = str(values, 'relay');
  const file = str(values, 'relay-file');
  if (given !== undefined && file !== undefined) throw usageError('--relay and --relay-file go alone: give one of them');
  let link: string;
  let flag: string;
  if (file !== undefined) {
    flag = '--relay-file';
    link = readSecretFile(file, flag, log);
  } else if (given === '-') {
    flag = '--relay -';
    link = await readSecretStdin(flag);
  } else if (given !== undefined) {
    flag = '--relay';
    link = given;
    warnSecretInArgv(log, 'a relay link (it holds the relay\'s secret)', '--relay-file FILE, --relay - (standard input), relay.link in the config file or the dashboard\'s import');
  } else return null;
  try {
    parseRelayLink(link);
  } catch (err) {
    throw usageError(`${flag}: ${errorMessage(err)}`);
  }
  return { link, flag };
}

/** `braid relay`'s secret: `--secret S` (warned), `--secret-file FILE` or BRAID_RELAY_SECRET; undefined: none given. */
export function relaySecretFromFlags(values: Values, log: Logger): string | undefined {
  const given = str(values, 'secret');
  const file = str(values, 'secret-file');
  if (given !== undefined && file !== undefined) throw usageError('--secret and --secret-file go alone: give one of them');
  let secret: string | undefined;
  if (file !== undefined) secret = readSecretFile(file, '--secret-file', log);
  else if (given !== undefined) {
    secret = given;
    warnSecretInArgv(log, '--secret', '--secret-file FILE or the BRAID_RELAY_SECRET environment variable');
  } else secret = process.env.BRAID_RELAY_SECRET;
  if (secret !== undefined && !/^[A-Za-z0-9_-]{16,128}$/.test(secret)) {
    const source = file !== undefined ? `--secret-file ${file}` : given !== undefined ? '--secret' : 'BRAID_RELAY_SECRET';
    throw usageError(`${source}: the secret must be 16-128 characters of A-Z a-z 0-9 _ -`);
  }
  return secret;
}

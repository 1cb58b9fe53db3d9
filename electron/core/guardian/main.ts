#!/usr/bin/env node
/**
 * The guardian process (see guardian.ts), started by a Braid process for itself:
 *   main.js --dir STATE/guardian --owner PID --owner-start TICKS [--wait-stdin]
 * Runs once its owner's lifeline has broken: makes sure the owner is really gone, puts back every
 * record the owner left, leaves notes for the next start to report, and exits.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '../errors';
import { ownerAlive } from './record';
import { leaveNotes, recoverLeftovers } from './recover';

const stamp = (): string => new Date().toISOString();
const log = {
  info: (m: string) => void process.stderr.write(`${stamp()} braid-guardian[${process.pid}]: ${m}\n`),
  warn: (m: string) => void process.stderr.write(`${stamp()} braid-guardian[${process.pid}]: warning: ${m}\n`),
};

function waitForStdinEnd(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.on('data', () => {});
    process.stdin.once('end', resolve);
    process.stdin.once('close', resolve);
    process.stdin.once('error', () => resolve());
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { dir: { type: 'string' }, owner: { type: 'string' }, 'owner-start': { type: 'string' }, 'wait-stdin': { type: 'boolean' } },
    strict: true,
  });
  if (!values.dir || !/^\d+$/.test(values.owner ?? '')) {
    process.stderr.write('usage: braid-guardian --dir DIR --owner PID [--owner-start TICKS] [--wait-stdin]\n');
    return 2;
  }
  if (values['wait-stdin']) await waitForStdinEnd();
  const owner = { pid: Number(values.owner), pidStartTime: values['owner-start'] || null, bootId: null, writtenAt: stamp() };
  // The lifeline breaks when the owner ends; should it ever break with the owner alive, wait.
  while (ownerAlive(owner)) await new Promise((r) => setTimeout(r, 250));
  const stateDir = path.dirname(path.resolve(values.dir));
  const done = await recoverLeftovers(stateDir, { log, onlyPid: owner.pid, exitedPid: owner.pid });
  for (const r of done) (r.ok ? log.info : log.warn)(`owner ${owner.pid}: ${r.message}`);
  leaveNotes(stateDir, done);
  return done.every((r) => r.ok) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    log.warn(`failed: ${errorMessage(err)}`);
    process.exit(1);
  },
);

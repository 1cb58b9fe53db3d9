#!/usr/bin/env node
/**
 * `node restore-main.js --journal FILE --exited-pid PID`: the exit hook's helper. Process 'exit'
 * cannot wait for the asynchronous backends, so the exiting process runs this synchronously; it
 * performs the ordinary crash recovery, treating PID as already gone. Exit 0 when nothing of
 * Braid's is left in place.
 */
import { parseArgs } from 'node:util';
import { errorCode, errorMessage } from '../errors';
import { createBackend } from './detect';
import { readJournal } from './journal';
import { SystemProxyManager } from './manager';

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { journal: { type: 'string' }, 'exited-pid': { type: 'string' } }, strict: true });
  if (!values.journal || !/^\d+$/.test(values['exited-pid'] ?? '')) {
    process.stderr.write('usage: restore-main --journal FILE --exited-pid PID\n');
    return 2;
  }
  const rec = readJournal(values.journal);
  if (!rec) return 0;
  const log = { info: () => {}, warn: (m: string) => void process.stderr.write(`braid: ${m}\n`) };
  const manager = new SystemProxyManager({ backend: createBackend(rec.backend), journalPath: values.journal, log });
  const outcome = await manager.recoverAfterCrash({ exitedPid: Number(values['exited-pid']) });
  return outcome === 'owned-by-live-process' ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`braid: restoring the system proxy failed: ${errorMessage(err)} [${errorCode(err)}]\n`);
    process.exit(1);
  },
);

/**
 * The guardian: a process that outlives Braid and puts back what Braid changed on the system when
 * Braid dies in a way it cannot clean up after itself (SIGKILL, an out-of-memory kill, a crash).
 *
 * How it knows: a lifeline pipe. The guardian's stdin is a pipe whose only write end is held by the
 * Braid process (libuv opens it close-on-exec, so programs Braid runs never inherit it). Whatever
 * way Braid ends, the kernel closes that end and the guardian reads EOF at once: no polling, no
 * pidfd needed, and it works the same on macOS. On POSIX the waiting is done by `sh` running `cat`
 * (about 1 MB), and Node is only started once the lifeline breaks; Windows waits in Node.
 *
 * The guardian runs in its own session (detached), so a Ctrl-C to Braid's terminal does not reach
 * it, and in Braid's network namespace and with Braid's privileges, which is what restoring needs.
 * What to restore it reads from the records (record.ts) at that moment, so it needs no messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../errors';
import type { Logger } from '../proxy/session';
import { listRecords, processStartTime } from './record';

const running = new Map<string, { child: ChildProcess; respawns: number }>();
let enabled = false;

/**
 * Braid's entry points (the CLI, the Electron main process) call this once: a guardian belongs to a
 * Braid process. Library code run in-process elsewhere (tests with stand-in backends and kernels)
 * never starts one, so no guardian can act on a record written against a stand-in.
 * BRAID_GUARDIAN=off keeps it off (tests simulating a power cut, where only the next start can
 * restore; debugging): not a setting for users, since a kill then leaves changes until the next start.
 */
export function enableGuardian(): void {
  enabled = process.env.BRAID_GUARDIAN !== 'off';
}
const MAX_RESPAWNS = 3;
const LOG_LIMIT = 256 * 1024;

/** Set in the guardian's own environment: a restore it runs must not start another guardian. */
export const GUARDIAN_CHILD_ENV = 'BRAID_GUARDIAN_CHILD';

/** The guardian's entry point, next to this file (in an asar package too: Electron reads it as Node). */
export const GUARDIAN_MAIN = path.join(__dirname, 'main.js');

/**
 * Makes sure a guardian watches this process for the records in `dir` (`<stateDir>/guardian`).
 * Called before the first record is written; cheap and idempotent afterwards.
 */
export function ensureGuardian(dir: string, log?: Pick<Logger, 'warn'>): void {
  if (!enabled || process.env[GUARDIAN_CHILD_ENV] === '1') return;
  const key = path.resolve(dir);
  const cur = running.get(key);
  if (cur && cur.child.exitCode === null && cur.child.signalCode === null) return;
  start(key, cur?.respawns ?? 0, log);
}

function start(dir: string, respawns: number, log?: Pick<Logger, 'warn'>): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const logFile = path.join(dir, 'guardian.log');
  try {
    if (fs.statSync(logFile).size > LOG_LIMIT) fs.truncateSync(logFile, 0);
  } catch {
    /* no log yet */
  }
  const logFd = fs.openSync(logFile, 'a', 0o600);
  const args = [GUARDIAN_MAIN, '--dir', dir, '--owner', String(process.pid), '--owner-start', processStartTime(process.pid) ?? ''];
  // Under Electron, execPath is the app: this makes it plain Node for the guardian.
  const env = { ...process.env, ELECTRON_RUN_AS_NODE: '1', [GUARDIAN_CHILD_ENV]: '1' };
  const opts = { detached: true, stdio: ['pipe', 'ignore', logFd] as ['pipe', 'ignore', number], env, windowsHide: true };
  const child =
    process.platform === 'win32'
      ? spawn(process.execPath, [...args, '--wait-stdin'], opts)
      : spawn('/bin/sh', ['-c', 'cat >/dev/null; exec "$@"', 'braid-guardian', process.execPath, ...args], opts);
  fs.closeSync(logFd);
  const entry = { child, respawns };
  running.set(dir, entry);
  child.stdin?.on('error', () => {});
  // Neither the child nor its lifeline may keep Braid's event loop alive.
  child.unref();
  (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  child.on('error', (err) => log?.warn(`guardian: could not start (${errorMessage(err)}); after a crash, changes are put back at the next start instead`));
  child.on('exit', () => {
    if (running.get(dir) !== entry) return;
    // Killed while we live: whoever did it, what we changed must stay covered.
    const ours = listRecords(dir).some((r) => r.record?.pid === process.pid);
    if (!ours) {
      running.delete(dir);
      return;
    }
    if (respawns >= MAX_RESPAWNS) {
      log?.warn('guardian: it keeps exiting; after a crash, changes are put back at the next start instead');
      return;
    }
    log?.warn('guardian: it exited while Braid runs; starting it again');
    start(dir, respawns + 1, log);
  });
}

/** The guardian's pid for `dir`, if one runs (tests and `braid status`). */
export function guardianPid(dir: string): number | null {
  const cur = running.get(path.resolve(dir));
  return cur && cur.child.exitCode === null && cur.child.signalCode === null ? cur.child.pid ?? null : null;
}

/**
 * Applying and removing Braid's nftables table with the `nft` tool (no shell; input on stdin).
 * Only `inet braid` is ever named here: replace it whole, atomically, or delete it.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import { BraidError } from '../errors';
import { TABLE_FAMILY, TABLE_NAME } from './ruleset';

const TIMEOUT_MS = 5000;

function nftPath(): string {
  for (const p of ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft']) if (fs.existsSync(p)) return p;
  return 'nft';
}

function nft(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(nftPath(), args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4096)));
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new BraidError('ENFT_MISSING', `the nft tool is not available (${err.message}); install nftables`, { cause: err }));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

/**
 * Puts `ruleset` (a whole `table inet braid {…}`) in place of any previous one in one transaction:
 * declaring the table first makes the delete valid whether or not it existed.
 */
export async function applyTable(ruleset: string): Promise<void> {
  const script = `table ${TABLE_FAMILY} ${TABLE_NAME}\ndelete table ${TABLE_FAMILY} ${TABLE_NAME}\n${ruleset}`;
  const r = await nft(['-f', '-'], script);
  if (r.code !== 0) {
    const why = r.stderr.trim().split('\n').slice(0, 4).join(' / ');
    throw new BraidError(/Operation not permitted/.test(r.stderr) ? 'EPERM' : 'ENFT', `nft refused Braid's table: ${why || `exit ${r.code}`}`);
  }
}

/** Removes the table; resolves true when it was there. */
export async function removeTable(): Promise<boolean> {
  const r = await nft(['delete', 'table', TABLE_FAMILY, TABLE_NAME]);
  if (r.code === 0) return true;
  if (/No such file or directory|does not exist/.test(r.stderr)) return false;
  throw new BraidError(/Operation not permitted/.test(r.stderr) ? 'EPERM' : 'ENFT', `nft could not remove Braid's table: ${r.stderr.trim().split('\n')[0] ?? `exit ${r.code}`}`);
}

/** Whether the table exists (for status and tests). */
export async function tableExists(): Promise<boolean> {
  const r = await nft(['list', 'table', TABLE_FAMILY, TABLE_NAME]);
  return r.code === 0;
}

/** Synchronous check that the tool is there, for a clear error before anything is attempted. */
export function nftAvailable(): Promise<boolean> {
  return new Promise((resolve) => execFile(nftPath(), ['--version'], { timeout: TIMEOUT_MS }, (err) => resolve(!err)));
}

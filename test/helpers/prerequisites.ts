/**
 * A test that cannot run here must not end green where everything is meant to run. Every reason to
 * skip (not root, no MPTCP, no native addon, no gsettings, no capsh/setpriv, ...) goes through here:
 *
 * - locally it stays a skip, and when the file ends a summary of everything it did not check goes to
 *   stderr (the test runner prints a child's stderr in its report), so a skip is never silent;
 * - with BRAID_REQUIRE_ALL=1 (set by .ci/run) the same reason is a failing test named
 *   "cannot check: <what>", whose error says why, so a wrongly set-up runner cannot report green.
 */
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';

export const REQUIRE_ALL = process.env.BRAID_REQUIRE_ALL === '1';

const notChecked: Array<{ what: string; why: string }> = [];

function record(what: string, why: string): void {
  if (notChecked.length === 0) process.once('exit', printSummary);
  notChecked.push({ what, why });
}

function printSummary(): void {
  const file = path.basename(process.argv[1] ?? 'this file');
  const lines = [
    `!!! ${file}: ${notChecked.length} group(s) of tests NOT CHECKED here${REQUIRE_ALL ? ' (failures: BRAID_REQUIRE_ALL=1)' : ' (skipped; BRAID_REQUIRE_ALL=1 makes these failures)'}:`,
    ...notChecked.map((n) => `!!!   - ${n.what}: ${n.why}`),
  ];
  try {
    fs.writeSync(2, lines.join('\n') + '\n');
  } catch {
    /* stderr closed: nothing else to tell */
  }
}

function failure(what: string, why: string): Error {
  return new Error(`BRAID_REQUIRE_ALL=1: could not check "${what}": ${why}`);
}

/**
 * For `describe(name, { skip: requireFor(name, reason) })` (or test): `reason` is what is missing,
 * or undefined/null/false when nothing is. Returns the skip value; under BRAID_REQUIRE_ALL=1 it also
 * registers a failing test naming `what` and the reason, next to the skipped group.
 */
export function requireFor(what: string, reason: string | undefined | null | false): string | false {
  if (!reason) return false;
  record(what, reason);
  if (REQUIRE_ALL) {
    test(`cannot check: ${what}`, () => {
      throw failure(what, reason);
    });
  }
  return reason;
}

/** Inside a running test that found a prerequisite missing: skips it locally, fails it in CI. */
export function skipOrFail(t: TestContext, what: string, reason: string): void {
  record(what, reason);
  if (REQUIRE_ALL) throw failure(what, reason);
  t.skip(reason);
}

/** Why the delay line (test/helpers/delay-line.py) cannot run here: no python3 on PATH; undefined when it can. */
export function missingPython(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    try {
      fs.accessSync(`${dir}/python3`, fs.constants.X_OK);
      return undefined;
    } catch { /* next */ }
  }
  return 'needs python3 for the delay line';
}

/** Why the nftables middleboxes of a test cannot be made here: no `nft` where Debian puts it (the paths transparent/nft.ts tries); undefined when they can. */
export function missingNft(forWhat: string): string | undefined {
  return ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].some((f) => fs.existsSync(f)) ? undefined : `needs nftables (nft) ${forWhat}`;
}

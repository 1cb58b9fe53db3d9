/**
 * Every long-running Braid command handles SIGTERM and SIGINT before it says it is ready. A
 * supervisor or test that stops it as soon as it reads the ready line must get a clean shutdown
 * ("SIGTERM: shutting down", what it changed put back), never the default action of a signal with
 * no handler yet. That race left MPTCP endpoints for the guardian to remove a moment later, under
 * the next test (paths.test.ts, 2 runs in 5), and lost the shutdown line in run-command.test.ts.
 *
 * A preload (helpers/ready-signal-preload.ts) reports the handler count at the moment the ready
 * line is written, so the order is checked exactly, not by winning a race.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { BRAID_CLI } from './helpers/multipath-harness';
import { startProcess } from './helpers/proc';

const PRELOAD = path.join(__dirname, 'helpers', 'ready-signal-preload.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-signal-ready-'));
const isRoot = process.getuid?.() === 0;

const commands: { name: string; args: string[]; skip?: string }[] = [
  { name: 'braid up', args: ['up', '--port', '0', '--host', '127.0.0.1', '--paths', 'off', '--control', 'off', '--state-dir', path.join(dir, 'up')] },
  { name: 'braid relay', args: ['relay', '--listen', '127.0.0.1:0', '--metrics', 'off', '--dir', path.join(dir, 'relay'), '--public-host', '127.0.0.1'] },
  { name: 'braid paths daemon', args: ['paths', 'daemon', '--config', path.join(dir, 'paths.json'), '--state-dir', path.join(dir, 'paths')] },
  {
    name: 'braid helper',
    args: ['helper', '--socket', path.join(dir, 'helper.sock'), '--state-dir', path.join(dir, 'helper')],
    skip: isRoot ? undefined : 'braid helper needs CAP_NET_ADMIN (run the tests as root)',
  },
];

describe('signal handlers are in place when a command says it is ready', { timeout: 60_000 }, () => {
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const c of commands) {
    test(c.name, { skip: c.skip }, async () => {
      const p = await startProcess(process.execPath, ['--require', PRELOAD, BRAID_CLI, ...c.args, '--verbose'], {
        env: { ...process.env, BRAID_CONFIG: path.join(dir, `${c.name.replace(/\W+/g, '-')}.json`) },
        ready: /^braid: (?:proxy listening|relay listening|helper listening|managing MPTCP endpoints).*$/m,
        timeoutMs: 20_000,
      });
      try {
        const check = /^ready-check SIGTERM=(\d+) SIGINT=(\d+)$/m.exec(p.stdout());
        assert.ok(check, `no ready-check line before the ready line:\n${p.stdout()}`);
        assert.ok(Number(check[1]) >= 1 && Number(check[2]) >= 1, `${c.name} said it was ready with ${check[1]} SIGTERM and ${check[2]} SIGINT handlers`);
      } finally {
        const exit = await p.stop('SIGTERM', 10_000);
        assert.match(p.stderr(), /SIGTERM: shutting down/, p.stderr());
        assert.equal(exit.code, 0, p.stderr());
      }
    });
  }
});

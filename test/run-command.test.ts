/**
 * The README's run command (issue 11, point 4): taken from README.md itself and run as written in a
 * network namespace with no network at all, it starts Braid without building anything (native/
 * build untouched); and the install step that `npm ci` runs skips an up-to-date addon and keeps a
 * working build when a rebuild fails.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { run, skipUnlessRoot, Topology, type Namespace } from './helpers/netns';
import { LISTENING_LINE, startProcess } from './helpers/proc';

const ROOT = path.resolve(__dirname, '..', '..');
const NATIVE = path.join(ROOT, 'native');

/** The commands under "## Set-up": the indented line after the paragraph that starts with `lead`. */
export function setUpCommand(readme: string, lead: string): string {
  const section = readme.slice(readme.indexOf('## Set-up'), readme.indexOf('\n## ', readme.indexOf('## Set-up') + 1));
  const blocks = section.split(/\n\s*\n/);
  const i = blocks.findIndex((b) => b.startsWith(lead));
  assert.ok(i >= 0 && blocks[i + 1]?.startsWith('    '), `README's Set-up has no command after a paragraph starting '${lead}'`);
  return blocks[i + 1]!.trim();
}

/** Every file under `dir` with its mtime and size: what a rebuild would change. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      const st = fs.lstatSync(full);
      out.set(path.relative(dir, full), `${st.mtimeMs} ${st.size}`);
      if (e.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return out;
}

describe("the README's run command", { skip: skipUnlessRoot(), timeout: 60_000 }, () => {
  let topology: Topology;
  let offline: Namespace;

  before(async () => {
    topology = new Topology();
    // No links, no routes: only loopback. Anything that wanted the network fails here.
    offline = await topology.addNamespace('o');
  });

  after(async () => {
    await topology?.destroy();
  });

  test('starts Braid offline from the README, and builds nothing', async (t) => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const command = setUpCommand(readme, 'Run Braid');
    assert.match(command, /^[\w .\/=-]+$/, `the run command should be one plain command line: ${command}`);
    assert.ok(!/npx/.test(command), 'npx installs the project into its cache and rebuilds it');
    const argv = command.split(/\s+/);
    const before = snapshot(path.join(NATIVE, 'build'));
    assert.ok(before.has(path.join('Release', 'braid_native.node')), 'the addon is built (npm ci)');
    const t0 = Date.now();
    const p = await startProcess(argv[0]!, [...argv.slice(1), '--port', '0', '--paths', 'off', '--control', 'off', '--verbose'], {
      prefix: ['ip', 'netns', 'exec', offline.name], cwd: ROOT, ready: LISTENING_LINE, timeoutMs: 20_000,
    });
    const ms = Date.now() - t0;
    let stopped: { code: number | null; signal: NodeJS.Signals | null };
    try {
      t.diagnostic(`'${command}' printed its listening line after ${ms} ms (offline, in a namespace with no network)`);
      assert.doesNotMatch(p.stdout() + p.stderr(), /gyp|building|node-gyp/i);
    } finally {
      // SIGTERM to what the command started (npm, when it is `npm run`): Braid must get it too,
      // not be left running as an orphan with the system changes it made.
      stopped = await p.stop('SIGTERM', 10_000);
    }
    const left = await run(['ip', 'netns', 'pids', offline.name], { allowFailure: true });
    for (const pid of left.stdout.split(/\s+/).filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    assert.equal(left.stdout.trim(), '', 'a process outlived the run command after SIGTERM');
    // 'exit' can come before the last of the pipe has been read.
    for (let i = 0; i < 40 && !/SIGTERM: shutting down/.test(p.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(p.stderr(), /SIGTERM: shutting down/);
    assert.equal(stopped.signal ?? stopped.code, 0, `the run command ended with ${JSON.stringify(stopped)}`);
    assert.deepEqual(snapshot(path.join(NATIVE, 'build')), before, 'native/build changed: something rebuilt the addon');
  });
});

describe("the install step (package.json 'install', run by npm ci)", () => {
  // A copy of native/ (sources and build) in a package of its own, so that a failing rebuild is
  // tried for real without putting the working tree's build at risk.
  let pkg: string;
  let nativeCopy: string;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const installer = require(path.join(NATIVE, 'install.js')) as { fingerprint(dir: string): string; STAMP: string; ADDON: string };

  before(() => {
    pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-install-'));
    nativeCopy = path.join(pkg, 'native');
    fs.cpSync(NATIVE, nativeCopy, { recursive: true });
    fs.rmSync(path.join(nativeCopy, 'build.previous'), { recursive: true, force: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
    fs.writeFileSync(path.join(nativeCopy, installer.STAMP), JSON.stringify({ fingerprint: installer.fingerprint(nativeCopy) }));
  });

  after(() => {
    if (pkg) fs.rmSync(pkg, { recursive: true, force: true });
  });

  const addonState = (): string => {
    const file = path.join(nativeCopy, installer.ADDON);
    return `${fs.statSync(file).mtimeMs} ${crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')}`;
  };

  const runInstall = (env: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [path.join(nativeCopy, 'install.js')], { cwd: pkg, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });

  test('an up-to-date addon is not rebuilt', () => {
    const was = addonState();
    const r = runInstall();
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /up to date, not rebuilt/);
    assert.equal(addonState(), was);
  });

  test('a rebuild that fails keeps the working build, and says so', () => {
    const was = addonState();
    const before = snapshot(path.join(nativeCopy, 'build'));
    // The sources change, so a rebuild is due; Node's headers are nowhere (an empty nodedir, as
    // offline without them), so node-gyp fails, after emptying build/ as `rebuild` does.
    fs.appendFileSync(path.join(nativeCopy, 'src', 'errors.cc'), '\n// changed\n');
    const emptyNodedir = fs.mkdtempSync(path.join(pkg, 'no-headers-'));
    const r = runInstall({ npm_config_nodedir: emptyNodedir });
    assert.notEqual(r.status, 0, 'the failed build must fail the install');
    assert.match(r.stderr, /building \(its sources changed\)/);
    assert.match(r.stderr, /the rebuild failed .*; the previous build in .* was kept/);
    assert.equal(addonState(), was, 'the working addon was lost or changed');
    assert.deepEqual(snapshot(path.join(nativeCopy, 'build')), before);
    assert.equal(fs.existsSync(path.join(nativeCopy, 'build.previous')), false);
  });
});

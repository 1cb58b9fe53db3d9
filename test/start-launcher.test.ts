/**
 * `npm start` (electron/app/start.js): without Electron's binary it explains how to get it and points
 * to `braid up`, exit 1; with a binary it runs it on the app, passing arguments, the exit code and
 * signals through. The "binary" in the second case is a shell script standing in for Electron (the
 * real one cannot be downloaded here), in a throwaway copy of the package layout.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { runProcess, startProcess } from './helpers/proc';
import { skipOrFail } from './helpers/prerequisites';

const ROOT = path.resolve(__dirname, '..', '..');
const LAUNCHER = path.join(ROOT, 'electron', 'app', 'start.js');
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A minimal package: the launcher, package.json, a built main, and node_modules/electron as asked. */
function layout(electron: { pathTxt?: string; binary?: string } | null): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-start-'));
  dirs.push(dir);
  fs.mkdirSync(path.join(dir, 'electron', 'app'), { recursive: true });
  fs.copyFileSync(LAUNCHER, path.join(dir, 'electron', 'app', 'start.js'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'braid', main: 'dist/electron/app/main.js' }));
  fs.mkdirSync(path.join(dir, 'dist', 'electron', 'app'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'dist', 'electron', 'app', 'main.js'), '');
  if (electron) {
    const pkg = path.join(dir, 'node_modules', 'electron');
    fs.mkdirSync(path.join(pkg, 'dist'), { recursive: true });
    fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'electron', version: '45.4.1', main: 'index.js' }));
    // What the real index.js does when the binary is missing: try to download it. Must never run.
    fs.writeFileSync(path.join(pkg, 'index.js'), "require('fs').writeFileSync(__dirname + '/REQUIRED', ''); throw new Error('index.js must not be required');\n");
    if (electron.pathTxt !== undefined) fs.writeFileSync(path.join(pkg, 'path.txt'), electron.pathTxt);
    if (electron.binary !== undefined) {
      fs.writeFileSync(path.join(pkg, 'dist', 'electron'), electron.binary, { mode: 0o755 });
    }
  }
  return dir;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.ELECTRON_OVERRIDE_DIST_PATH;
  // The launcher would otherwise try Electron's one-time download, which needs the internet.
  env.ELECTRON_SKIP_BINARY_DOWNLOAD = '1';
  return env;
}

function assertMissingMessage(stderr: string): void {
  assert.match(stderr, /Electron's binary is not installed/);
  assert.match(stderr, /node node_modules\/electron\/install\.js/);
  assert.match(stderr, /npm rebuild electron/);
  assert.match(stderr, /ELECTRON_SKIP_BINARY_DOWNLOAD/);
  assert.match(stderr, /npm run braid -- up/);
}

describe('npm start launcher', () => {
  test('binary never downloaded (no path.txt): the message names the fixes and braid up, exit 1', async () => {
    const dir = layout({});
    const r = await runProcess(process.execPath, [path.join(dir, 'electron', 'app', 'start.js')], { env: cleanEnv(), timeoutMs: 20_000 });
    assert.equal(r.code, 1, r.stderr);
    assertMissingMessage(r.stderr);
    assert.equal(fs.existsSync(path.join(dir, 'node_modules', 'electron', 'REQUIRED')), false, 'electron/index.js (which downloads) was not run');
  });

  test('path.txt present but the binary gone: the same message', async () => {
    const dir = layout({ pathTxt: 'electron' });
    const r = await runProcess(process.execPath, [path.join(dir, 'electron', 'app', 'start.js')], { env: cleanEnv(), timeoutMs: 20_000 });
    assert.equal(r.code, 1);
    assertMissingMessage(r.stderr);
    assert.match(r.stderr, /does not exist/);
  });

  test('no electron package at all: the same message', async () => {
    const dir = layout(null);
    const r = await runProcess(process.execPath, [path.join(dir, 'electron', 'app', 'start.js')], { env: { ...cleanEnv(), NODE_PATH: '' }, timeoutMs: 20_000 });
    assert.equal(r.code, 1);
    assertMissingMessage(r.stderr);
  });

  test('with a binary: runs it on the package root with the arguments, exits with its code', async () => {
    const dir = layout({ pathTxt: 'electron', binary: '#!/bin/sh\necho "electron got: $*"\n[ -n "$ELECTRON_RUN_AS_NODE" ] && echo "RUN_AS_NODE leaked"\nexit 7\n' });
    const r = await runProcess(process.execPath, [path.join(dir, 'electron', 'app', 'start.js'), '--hidden', '--verbose'], { env: { ...cleanEnv(), ELECTRON_RUN_AS_NODE: '1' }, timeoutMs: 20_000 });
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout.toString().trim(), `electron got: ${dir} --hidden --verbose`);
  });

  test('with a binary: SIGTERM to the launcher reaches the app, and the launcher ends the same way', async () => {
    const dir = layout({ pathTxt: 'electron', binary: "#!/bin/sh\ntrap 'echo got TERM; exit 143' TERM\necho ready\nwhile :; do sleep 0.05; done\n" });
    const p = await startProcess(process.execPath, [path.join(dir, 'electron', 'app', 'start.js')], { env: cleanEnv(), ready: /^ready$/m, timeoutMs: 20_000 });
    try {
      p.child.kill('SIGTERM');
      const end = await Promise.race([p.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
      assert.ok(end, 'the launcher ended within 10 s');
      assert.match(p.stdout(), /got TERM/);
      assert.equal(end.code, 143);
    } finally {
      await p.stop('SIGKILL', 1000);
    }
  });

  test('the real `npm start` here, where the binary is missing, says so and exits 1', async (t) => {
    const pathTxt = path.join(ROOT, 'node_modules', 'electron', 'path.txt');
    if (fs.existsSync(pathTxt) && fs.existsSync(path.join(ROOT, 'node_modules', 'electron', 'dist'))) {
      return skipOrFail(t, 'the real `npm start` without the binary (start-launcher.test.ts)', 'Electron\'s binary is installed on this machine: npm start would open the app');
    }
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const env = cleanEnv();
    const r = await runProcess(npm, ['start', '--prefix', ROOT, '--silent'], { env, timeoutMs: 60_000 });
    assert.equal(r.code, 1, r.stderr);
    assertMissingMessage(r.stderr);
  });
});

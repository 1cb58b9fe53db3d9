#!/usr/bin/env node
/**
 * `npm start`: opens the desktop app with the Electron binary from node_modules, passing the
 * arguments through and exiting with its exit code. Where the binary was never downloaded
 * (ELECTRON_SKIP_BINARY_DOWNLOAD=1, an offline install) it says so, how to get it, and that
 * `braid up` runs the same proxy headless.
 *
 * It looks the binary up itself rather than require('electron'): that package's index.js starts a
 * download when the binary is missing, which offline hangs or fails with an unrelated message.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..', '..');

/** { exe } or { missing: why }, following electron/index.js without its download side effect. */
function findElectron() {
  let pkgDir;
  try {
    pkgDir = path.dirname(require.resolve('electron/package.json', { paths: [root] }));
  } catch {
    return { missing: 'the electron package is not installed (npm install)' };
  }
  let name = null;
  try {
    name = fs.readFileSync(path.join(pkgDir, 'path.txt'), 'utf8').trim();
  } catch {
    // no path.txt: install.js never completed a download
  }
  const override = process.env.ELECTRON_OVERRIDE_DIST_PATH;
  if (override) {
    const exe = path.join(override, name || 'electron');
    return fs.existsSync(exe) ? { exe } : { missing: `ELECTRON_OVERRIDE_DIST_PATH points at ${override}, which has no ${name || 'electron'}` };
  }
  if (!name) return { missing: `${path.relative(process.cwd(), pkgDir) || pkgDir} has no downloaded binary (no path.txt)` };
  const exe = path.join(pkgDir, 'dist', name);
  if (!fs.existsSync(exe)) return { missing: `${exe} does not exist` };
  return { exe };
}

function missingMessage(why) {
  return [
    "braid: cannot open the desktop app: Electron's binary is not installed",
    `  (${why}; it is skipped when installing with ELECTRON_SKIP_BINARY_DOWNLOAD=1 or offline).`,
    '',
    'To get it (needs internet), from the project directory:',
    '    node node_modules/electron/install.js',
    'or reinstall it without ELECTRON_SKIP_BINARY_DOWNLOAD:',
    '    npm rebuild electron',
    '',
    'Without the desktop app, the same proxy runs headless with the dashboard in your browser:',
    '    npm run braid -- up',
    '',
  ].join('\n');
}

/**
 * Electron's package downloads its binary on first use rather than at install time; do that here,
 * once, visibly, unless the user asked for no download. Offline it fails within a second.
 */
function downloadElectron() {
  if (process.env.ELECTRON_SKIP_BINARY_DOWNLOAD) return;
  let installer;
  try {
    installer = path.join(path.dirname(require.resolve('electron/package.json', { paths: [root] })), 'install.js');
  } catch {
    return;
  }
  if (!fs.existsSync(installer)) return;
  process.stderr.write("braid: downloading Electron's binary (once)...\n");
  spawnSync(process.execPath, [installer], { stdio: 'inherit', timeout: 10 * 60 * 1000 });
}

function main() {
  let found = findElectron();
  if (!found.exe) {
    downloadElectron();
    found = findElectron();
  }
  if (!found.exe) {
    process.stderr.write(missingMessage(found.missing));
    return process.exit(1);
  }
  const mainJs = path.join(root, require(path.join(root, 'package.json')).main || 'dist/electron/app/main.js');
  if (!fs.existsSync(mainJs)) {
    process.stderr.write(`braid: ${path.relative(process.cwd(), mainJs)} is not built yet; run \`npm run build\` first\n`);
    return process.exit(1);
  }
  // Inherited, this would make Electron behave as plain Node and never open a window.
  const env = { ...process.env };
  delete env.ELECTRON_RUN_AS_NODE;
  const child = spawn(found.exe, [root, ...process.argv.slice(2)], { stdio: 'inherit', env, windowsHide: false });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    });
  }
  child.on('error', (err) => {
    process.stderr.write(`braid: cannot run ${found.exe}: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      // Exit the way the app did, so a caller sees the same signal.
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      setTimeout(() => process.exit(1), 1000).unref();
      return;
    }
    process.exit(code === null ? 1 : code);
  });
}

main();

#!/usr/bin/env node
/**
 * npm's install step for the native addon (package.json "install"). Two rules:
 *
 * - An addon that is up to date is not rebuilt: `npm ci` and `npm rebuild` after the first build
 *   cost nothing, need no compiler and no network. Up to date means it loads and was built from
 *   these sources (binding.gyp, src/, node-addon-api's version) on this platform; the fingerprint
 *   of what it was built from is kept next to it (build/braid-build.json).
 * - A failed rebuild never costs the working build: `node-gyp rebuild` empties build/ first, so the
 *   old one is set aside and put back if the new one fails (offline without headers, no compiler).
 *
 * Plain JavaScript on purpose: it runs before the TypeScript is compiled.
 * Required as a module (tests), it only exports the pieces.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const ADDON = path.join('build', 'Release', 'braid_native.node');
const STAMP = path.join('build', 'braid-build.json');
const SET_ASIDE = 'build.previous';

function filesUnder(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(full));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

/** What an addon built in `nativeDir` now would be built from. */
function fingerprint(nativeDir) {
  const h = crypto.createHash('sha256');
  h.update(`${process.platform} ${process.arch}\n`);
  let addonApi = 'unknown';
  try {
    addonApi = require(require.resolve('node-addon-api/package.json', { paths: [nativeDir] })).version;
  } catch {
    // Not installed: node-gyp will say so if a build is needed.
  }
  h.update(`node-addon-api ${addonApi}\n`);
  for (const file of [path.join(nativeDir, 'binding.gyp'), ...filesUnder(path.join(nativeDir, 'src'))]) {
    h.update(`${path.relative(nativeDir, file)}\n`);
    h.update(fs.readFileSync(file));
  }
  return h.digest('hex');
}

/** null when the addon in `nativeDir` is up to date, else why it is not. */
function staleReason(nativeDir) {
  const addon = path.join(nativeDir, ADDON);
  if (!fs.existsSync(addon)) return 'not built yet';
  let stamp;
  try {
    stamp = JSON.parse(fs.readFileSync(path.join(nativeDir, STAMP), 'utf8'));
  } catch {
    return 'built by an older install step (no fingerprint)';
  }
  if (stamp.fingerprint !== fingerprint(nativeDir)) return 'its sources changed';
  try {
    require(addon);
  } catch (err) {
    return `it does not load here (${err.message})`;
  }
  return null;
}

/** npm's own node-gyp (the one its lifecycle scripts get), else one on PATH. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  const js = candidates.find((c) => c && c.endsWith('.js') && fs.existsSync(c));
  return js ? [process.execPath, js] : ['node-gyp'];
}

function log(msg) {
  process.stderr.write(`braid native addon: ${msg}\n`);
}

/** Builds unless up to date; returns the exit status. */
function install(nativeDir) {
  const build = path.join(nativeDir, 'build');
  const aside = path.join(nativeDir, SET_ASIDE);
  // A previous run killed mid-build left the old build set aside: it is still the working one.
  if (fs.existsSync(aside) && !fs.existsSync(path.join(nativeDir, ADDON))) {
    fs.rmSync(build, { recursive: true, force: true });
    fs.renameSync(aside, build);
  }
  fs.rmSync(aside, { recursive: true, force: true });
  const why = process.env.BRAID_REBUILD ? 'BRAID_REBUILD is set' : staleReason(nativeDir);
  if (!why) {
    log('up to date, not rebuilt');
    return 0;
  }
  log(`building (${why})`);
  const hadBuild = fs.existsSync(build);
  if (hadBuild) fs.renameSync(build, aside);
  const [cmd, ...args] = nodeGyp();
  const r = spawnSync(cmd, [...args, 'rebuild', '--directory', nativeDir], { stdio: 'inherit' });
  if (r.status === 0 && fs.existsSync(path.join(nativeDir, ADDON))) {
    fs.writeFileSync(path.join(nativeDir, STAMP), JSON.stringify({ fingerprint: fingerprint(nativeDir), node: process.version }, null, 2) + '\n');
    fs.rmSync(aside, { recursive: true, force: true });
    return 0;
  }
  const failure = r.error ? `${cmd} could not run (${r.error.message})` : `node-gyp exited with ${r.status ?? r.signal}`;
  if (hadBuild) {
    fs.rmSync(build, { recursive: true, force: true });
    fs.renameSync(aside, build);
    log(`the rebuild failed (${failure}); the previous build in ${build} was kept`);
  } else {
    log(`the build failed (${failure}); without the addon Braid dials plain TCP and has no path management`);
  }
  return r.status || 1;
}

module.exports = { fingerprint, staleReason, install, ADDON, STAMP };

if (require.main === module) process.exitCode = install(__dirname);

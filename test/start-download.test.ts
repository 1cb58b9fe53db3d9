/**
 * The launcher's one-time Electron download (electron/app/start.js → electron's own install.js →
 * @electron/get), against a stand-in for Electron's release server on loopback: ELECTRON_MIRROR
 * points at it, and it serves a zip holding a shell script in place of the binary (the real one
 * cannot be downloaded here). The package layout is a throwaway copy with the real install.js and
 * a checksums.json naming the stand-in zip's SHA-256, which is how @electron/get checks a download.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { runProcess } from './helpers/proc';

const ROOT = path.resolve(__dirname, '..', '..');
const LAUNCHER = path.join(ROOT, 'electron', 'app', 'start.js');
const ELECTRON_PKG = path.join(ROOT, 'node_modules', 'electron');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ELECTRON_PKG, 'package.json'), 'utf8')) as { version: string }).version;
const ZIP_NAME = `electron-v${VERSION}-${process.platform}-${process.arch}.zip`;
const FAKE_ELECTRON = '#!/bin/sh\necho "electron got: $*"\nexit 7\n';

/** A zip as Electron's releases are laid out: the executable and a version file, at the top. */
function makeZip(dir: string, script: string): Buffer {
  const zip = path.join(dir, 'electron.zip');
  execFileSync('python3', ['-c', [
    'import sys, zipfile',
    'z = zipfile.ZipFile(sys.argv[1], "w")',
    'i = zipfile.ZipInfo("electron"); i.external_attr = (0o100755 << 16); z.writestr(i, sys.argv[2])',
    'z.writestr("version", "v" + sys.argv[3])',
    'z.close()',
  ].join('\n'), zip, script, VERSION], { timeout: 20_000 });
  return fs.readFileSync(zip);
}

interface Mirror { url: string; requests: string[]; serve: Buffer; close(): Promise<void> }

async function startMirror(serve: Buffer): Promise<Mirror> {
  const requests: string[] = [];
  const mirror: Mirror = { url: '', requests, serve, close: async () => {} };
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.url === `/v${VERSION}/${ZIP_NAME}`) {
      res.writeHead(200, { 'Content-Type': 'application/zip', 'Content-Length': mirror.serve.length });
      res.end(mirror.serve);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  mirror.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`;
  mirror.close = () => new Promise((r) => server.close(() => r()));
  return mirror;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** The package as installed with ELECTRON_SKIP_BINARY_DOWNLOAD: electron's package, no binary. */
function layout(checksum: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-start-dl-'));
  dirs.push(dir);
  fs.mkdirSync(path.join(dir, 'electron', 'app'), { recursive: true });
  fs.copyFileSync(LAUNCHER, path.join(dir, 'electron', 'app', 'start.js'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'braid', main: 'dist/electron/app/main.js' }));
  fs.mkdirSync(path.join(dir, 'dist', 'electron', 'app'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'dist', 'electron', 'app', 'main.js'), '');
  const pkg = path.join(dir, 'node_modules', 'electron');
  fs.mkdirSync(pkg, { recursive: true });
  for (const f of ['package.json', 'install.js']) fs.copyFileSync(path.join(ELECTRON_PKG, f), path.join(pkg, f));
  fs.writeFileSync(path.join(pkg, 'checksums.json'), JSON.stringify({ [ZIP_NAME]: checksum }));
  // index.js downloads as a side effect of require('electron'): the launcher must never load it.
  fs.writeFileSync(path.join(pkg, 'index.js'), "require('fs').writeFileSync(__dirname + '/REQUIRED', ''); throw new Error('index.js must not be required');\n");
  return dir;
}

/** The environment of a first `npm start`: nothing about Electron but the mirror and a throwaway cache. */
function env(dir: string, mirror: string): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/electron/i.test(k)) e[k] = v;
  // install.js's own dependencies (@electron/get, extract-zip) come from this checkout.
  e.NODE_PATH = path.join(ROOT, 'node_modules');
  e.ELECTRON_MIRROR = mirror;
  e.electron_config_cache = path.join(dir, 'cache');
  return e;
}

const start = (dir: string, e: NodeJS.ProcessEnv, args: string[] = []) =>
  runProcess(process.execPath, [path.join(dir, 'electron', 'app', 'start.js'), ...args], { env: e, timeoutMs: 120_000 });

describe('npm start: the one-time Electron download, from a stand-in mirror', () => {
  let zip: Buffer;
  let sha: string;
  let mirror: Mirror;
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-start-zip-'));

  before(async () => {
    zip = makeZip(scratch, FAKE_ELECTRON);
    sha = crypto.createHash('sha256').update(zip).digest('hex');
    mirror = await startMirror(zip);
  });
  after(async () => {
    await mirror?.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('the first start downloads once, checks it, installs it and runs it; the next start does not download', async () => {
    const dir = layout(sha);
    const e = env(dir, mirror.url);
    const from = mirror.requests.length;
    const first = await start(dir, e, ['--hidden']);
    assert.equal(first.code, 7, `exit ${first.code}: ${first.stderr}`);
    assert.equal(first.stdout.toString().trim(), `electron got: ${dir} --hidden`);
    assert.match(first.stderr, /downloading Electron's binary \(once\)/);
    assert.deepEqual(mirror.requests.slice(from), [`GET /v${VERSION}/${ZIP_NAME}`]);
    const pkg = path.join(dir, 'node_modules', 'electron');
    assert.equal(fs.readFileSync(path.join(pkg, 'path.txt'), 'utf8'), 'electron');
    assert.equal(fs.readFileSync(path.join(pkg, 'dist', 'electron'), 'utf8'), FAKE_ELECTRON);
    assert.equal(fs.existsSync(path.join(pkg, 'REQUIRED')), false, 'electron/index.js was loaded');

    const second = await start(dir, e, ['--verbose']);
    assert.equal(second.code, 7, second.stderr);
    assert.equal(second.stdout.toString().trim(), `electron got: ${dir} --verbose`);
    assert.doesNotMatch(second.stderr, /downloading/);
    assert.equal(mirror.requests.length, from + 1, `downloaded again: ${mirror.requests.slice(from).join(', ')}`);
  });

  test('a download that does not match its checksum is not installed: the start says how to get it, exit 1', async () => {
    const dir = layout(crypto.createHash('sha256').update('something else').digest('hex'));
    const from = mirror.requests.length;
    const r = await start(dir, env(dir, mirror.url));
    assert.equal(r.code, 1, r.stderr);
    assert.equal(mirror.requests.length, from + 1, 'the mirror was not asked');
    assert.match(r.stderr, /checksum/i, 'the failure does not say why');
    assert.match(r.stderr, /Electron's binary is not installed/);
    assert.match(r.stderr, /npm run braid -- up/);
    assert.equal(fs.existsSync(path.join(dir, 'node_modules', 'electron', 'path.txt')), false, 'a download that failed its check was installed');
  });

  test('no server to download from (offline): the start says how to get it, exit 1', async () => {
    const dir = layout(sha);
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const dead = `http://127.0.0.1:${(probe.address() as net.AddressInfo).port}/`;
    await new Promise<void>((r) => probe.close(() => r()));
    const r = await start(dir, env(dir, dead));
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ECONNREFUSED/);
    assert.match(r.stderr, /Electron's binary is not installed/);
    assert.match(r.stderr, /npm run braid -- up/);
  });

  test('ELECTRON_SKIP_BINARY_DOWNLOAD: nothing is asked of the mirror', async () => {
    const dir = layout(sha);
    const from = mirror.requests.length;
    const r = await start(dir, { ...env(dir, mirror.url), ELECTRON_SKIP_BINARY_DOWNLOAD: '1' });
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /downloading/);
    assert.match(r.stderr, /Electron's binary is not installed/);
    assert.equal(mirror.requests.length, from);
  });
});

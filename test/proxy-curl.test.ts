/**
 * Real curl through the real `braid up`: SOCKS5 (remote and local resolution), HTTP forwarding with
 * keep-alive across hosts and framings, uploads, HTTPS through CONNECT, and authentication. Content
 * is checked by SHA-256 of random data made at test time. Runs with `--dial tcp` and, when the
 * native addon and kernel allow it, with `--dial mptcp` against an MPTCP origin (must be reported as
 * mptcp) and against a plain TCP origin (MPTCP falls back; must work and be reported as fallback).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BraidProxy, runProcess, startBraid } from './helpers/proc';
import { Cert, makeSelfSignedCert, mptcpAvailable, OriginServer, sha256, startOrigin } from './helpers/servers';
import { requireFor } from './helpers/prerequisites';

const CURL = '/usr/bin/curl';
const BLOB = 3 * 1024 * 1024;
const mptcp = mptcpAvailable();

let tmp: string;
let cert: Cert;

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-curl-'));
  cert = makeSelfSignedCert();
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  if (cert) fs.rmSync(cert.dir, { recursive: true, force: true });
});

async function curl(args: string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return runProcess(CURL, ['-sS', '--max-time', '60', ...args], { timeoutMs: 90_000 });
}

function tmpFile(name: string): string {
  return path.join(tmp, `${name}-${crypto.randomBytes(4).toString('hex')}`);
}

/** `-w` lines "CODE CONNECTS" for each transfer of one curl invocation. */
function transfers(stdout: Buffer): { status: number; connects: number }[] {
  return stdout
    .toString('latin1')
    .split('\n')
    .filter((l) => /^\d{3} \d+$/.test(l))
    .map((l) => {
      const [s, c] = l.split(' ').map(Number);
      return { status: s, connects: c };
    });
}

/** Waits (bounded) for the proxy's verbose log to report `n` closed connections to `port`. */
async function closedTransports(proxy: BraidProxy, port: number, atLeast: number): Promise<string[]> {
  // "connection N closed: PROTO CLIENT [(PROGRAM, pid N)] -> HOST:PORT (ADDRESS) transport T"
  const re = new RegExp(`connection \\d+ closed: \\S+ \\S+(?: \\([^)]*\\))? -> \\S+:${port} \\(\\S+\\) transport (\\w+)`, 'g');
  let found: string[] = [];
  for (let i = 0; i < 50; i++) {
    found = [...proxy.stderr().matchAll(re)].map((m) => m[1]);
    if (found.length >= atLeast) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return found;
}

interface Variant {
  name: string;
  dial: 'tcp' | 'mptcp';
  mptcpOrigin: boolean;
  expectTransport: 'tcp' | 'mptcp' | 'fallback';
  skip: string | false;
  auth: boolean;
}

const variants: Variant[] = [
  { name: '--dial tcp', dial: 'tcp', mptcpOrigin: false, expectTransport: 'tcp', skip: false, auth: true },
  {
    name: '--dial mptcp to an MPTCP origin',
    dial: 'mptcp',
    mptcpOrigin: true,
    expectTransport: 'mptcp',
    skip: mptcp.ok ? false : `MPTCP not available: ${mptcp.reason}`,
    auth: false,
  },
  {
    name: '--dial mptcp to a plain TCP origin (fallback)',
    dial: 'mptcp',
    mptcpOrigin: false,
    expectTransport: 'fallback',
    skip: mptcp.ok ? false : `MPTCP not available: ${mptcp.reason}`,
    auth: false,
  },
];

for (const v of variants) {
  describe(`curl through braid ${v.name}`, { skip: requireFor(`curl through braid ${v.name} (proxy-curl.test.ts)`, v.skip) }, () => {
    let origin: OriginServer;
    let tls: OriginServer;
    let proxy: BraidProxy;
    let authProxy: BraidProxy | null = null;
    let big: Buffer;
    let P: string;

    before(async () => {
      origin = await startOrigin({ mptcp: v.mptcpOrigin, blobs: { big: BLOB } });
      big = origin.blobs.get('big')!;
      tls = await startOrigin({ mptcp: v.mptcpOrigin, tls: cert, blobs: { big: BLOB } });
      proxy = await startBraid(['up', '--port', '0', '--dial', v.dial, '--verbose']);
      assert.equal(proxy.dial, v.dial, 'the proxy dials as asked');
      P = `127.0.0.1:${proxy.port}`;
      if (v.auth) authProxy = await startBraid(['up', '--port', '0', '--dial', v.dial, '--auth', 'alice:s3cret']);
    });

    after(async () => {
      await proxy?.stop();
      await authProxy?.stop();
      await origin?.close();
      await tls?.close();
    });

    test('curl --socks5-hostname downloads intact', async () => {
      const r = await curl(['--socks5-hostname', P, `http://localhost:${origin.port}/blob/big`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), sha256(big));
    });

    test('curl --socks5 (client-side resolution, IPv4 address) downloads intact', async () => {
      const r = await curl(['--socks5', P, `http://localhost:${origin.port}/blob/big`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), sha256(big));
    });

    test('curl -x http:// fetches two URLs on different hosts over one proxy connection', async () => {
      const a = tmpFile('a');
      const b = tmpFile('b');
      const r = await curl([
        '-x', `http://${P}`, '-w', '%{http_code} %{num_connects}\\n',
        `http://127.0.0.1:${origin.port}/blob/big`, '-o', a,
        `http://localhost:${origin.port}/blob/big`, '-o', b,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(transfers(r.stdout), [{ status: 200, connects: 1 }, { status: 200, connects: 0 }]);
      assert.equal(sha256(fs.readFileSync(a)), sha256(big));
      assert.equal(sha256(fs.readFileSync(b)), sha256(big));
    });

    test('chunked, length-framed and read-until-close responses in one keep-alive session', async () => {
      const files = [tmpFile('c1'), tmpFile('c2'), tmpFile('c3'), tmpFile('c4')];
      const paths = ['/chunked/big', '/blob/big', '/close/big', '/blob/big'];
      const args = ['-x', `http://${P}`, '-w', '%{http_code} %{num_connects}\\n'];
      paths.forEach((p, i) => args.push(`${origin.base}${p}`, '-o', files[i]));
      const r = await curl(args);
      assert.equal(r.code, 0, r.stderr);
      // The close-delimited response ends the client connection, so the last transfer reconnects.
      assert.deepEqual(transfers(r.stdout), [
        { status: 200, connects: 1 },
        { status: 200, connects: 0 },
        { status: 200, connects: 0 },
        { status: 200, connects: 1 },
      ]);
      for (const f of files) assert.equal(sha256(fs.readFileSync(f)), sha256(big), f);
    });

    test('HEAD, 204 and 304 carry no body and keep the connection usable', async () => {
      const out = tmpFile('after');
      const r = await curl([
        '-x', `http://${P}`, '-w', '%{http_code} %{num_connects}\\n', '-I', `${origin.base}/blob/big`, '-o', '/dev/null',
        '--next', '-x', `http://${P}`, '-w', '%{http_code} %{num_connects}\\n', `${origin.base}/empty`, '-o', '/dev/null',
        '--next', '-x', `http://${P}`, '-w', '%{http_code} %{num_connects}\\n', `${origin.base}/not-modified`, '-o', '/dev/null',
        '--next', '-x', `http://${P}`, '-w', '%{http_code} %{num_connects}\\n', `${origin.base}/blob/big`, '-o', out,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(transfers(r.stdout), [
        { status: 200, connects: 1 },
        { status: 204, connects: 0 },
        { status: 304, connects: 0 },
        { status: 200, connects: 0 },
      ]);
      assert.equal(sha256(fs.readFileSync(out)), sha256(big));
    });

    test('uploads with Content-Length and chunked bodies arrive intact, then keep-alive continues', async () => {
      const body = crypto.randomBytes(2 * 1024 * 1024 + 17);
      const file = tmpFile('up');
      fs.writeFileSync(file, body);
      const o1 = tmpFile('e1');
      const o2 = tmpFile('e2');
      const o3 = tmpFile('e3');
      const w = ['-w', '%{http_code} %{num_connects}\\n'];
      const r = await curl([
        '-x', `http://${P}`, ...w, '--data-binary', `@${file}`, '-H', 'Content-Type: application/octet-stream', `${origin.base}/echo`, '-o', o1,
        '--next', '-x', `http://${P}`, ...w, '--data-binary', `@${file}`, '-H', 'Transfer-Encoding: chunked', `${origin.base}/echo`, '-o', o2,
        '--next', '-x', `http://${P}`, ...w, `${origin.base}/blob/big`, '-o', o3,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const t = transfers(r.stdout);
      assert.deepEqual(t.map((x) => x.status), [200, 200, 200]);
      assert.deepEqual(t.map((x) => x.connects), [1, 0, 0]);
      for (const f of [o1, o2]) {
        const echo = JSON.parse(fs.readFileSync(f, 'utf8')) as { sha256: string; length: number };
        assert.equal(echo.length, body.length);
        assert.equal(echo.sha256, sha256(body));
      }
      assert.equal(sha256(fs.readFileSync(o3)), sha256(big));
    });

    test('the origin sees origin-form targets and no proxy headers', async () => {
      const before = origin.requests.length;
      const r = await curl(['-x', `http://${P}`, '-H', 'Proxy-Connection: keep-alive', `${origin.base}/blob/big`, '-o', '/dev/null']);
      assert.equal(r.code, 0, r.stderr);
      const seen = origin.requests.slice(before);
      assert.equal(seen.length, 1);
      assert.equal(seen[0].url, '/blob/big');
      assert.equal(seen[0].headers['proxy-connection'], undefined);
      assert.equal(seen[0].headers.host, `127.0.0.1:${origin.port}`);
    });

    test('curl -x http:// https:// tunnels TLS through CONNECT', async () => {
      const r = await curl(['-x', `http://${P}`, '--cacert', cert.certFile, `https://localhost:${tls.port}/blob/big`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), sha256(tls.blobs.get('big')!));
    });

    test('curl --socks5-hostname https:// downloads intact', async () => {
      const r = await curl(['--socks5-hostname', P, '--cacert', cert.certFile, `https://localhost:${tls.port}/blob/big`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), sha256(tls.blobs.get('big')!));
    });

    test(`connections are reported with transport ${v.expectTransport}`, async () => {
      // Every connection above that reached the plain-HTTP origin has closed by now or shortly.
      const found = await closedTransports(proxy, origin.port, 5);
      assert.ok(found.length >= 5, `expected closed-connection lines in the log, got ${found.length}:\n${proxy.stderr()}`);
      assert.deepEqual([...new Set(found)], [v.expectTransport]);
    });

    // Auth is the same code whatever the dial mode: checked once, on the tcp variant.
    if (v.auth) describe('with --auth', () => {
      test('HTTP proxy with right credentials', async () => {
        const r = await curl(['-x', `http://alice:s3cret@127.0.0.1:${authProxy!.port}`, `${origin.base}/blob/big`]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(sha256(r.stdout), sha256(big));
      });

      test('HTTP proxy with wrong credentials gets 407', async () => {
        const r = await curl(['-x', `http://alice:nope@127.0.0.1:${authProxy!.port}`, '-o', '/dev/null', '-w', '%{http_code}', `${origin.base}/blob/big`]);
        assert.equal(r.stdout.toString(), '407');
      });

      test('CONNECT with right credentials', async () => {
        const r = await curl(['-x', `http://alice:s3cret@127.0.0.1:${authProxy!.port}`, '--cacert', cert.certFile, `https://localhost:${tls.port}/blob/big`]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(sha256(r.stdout), sha256(tls.blobs.get('big')!));
      });

      test('SOCKS5 with right credentials', async () => {
        const r = await curl(['-x', `socks5h://alice:s3cret@127.0.0.1:${authProxy!.port}`, `${origin.base}/blob/big`]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(sha256(r.stdout), sha256(big));
      });

      test('SOCKS5 with wrong credentials fails the handshake', async () => {
        const r = await curl(['-x', `socks5h://alice:nope@127.0.0.1:${authProxy!.port}`, `${origin.base}/blob/big`]);
        assert.equal(r.code, 97, `curl exit code 97 (proxy handshake error), stderr: ${r.stderr}`);
        assert.equal(r.stdout.length, 0);
      });
    });
  });
}

/**
 * Runnable HTTPS origin for namespace tests (a self-signed certificate made at start):
 *   node dist/test/helpers/serve-https.js [--port N]
 * Serves startOrigin's endpoints (/blob/big, 5 MB of random bytes; /echo …) and prints
 * `listening <port> <sha256 of /blob/big>` when ready.
 */
import fs from 'node:fs';
import { makeSelfSignedCert, sha256, startOrigin } from './servers';

async function main(): Promise<void> {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 0;
  const cert = makeSelfSignedCert();
  const origin = await startOrigin({ host: '::', tls: cert, blobs: { big: 5 * 1024 * 1024 }, port });
  process.stdout.write(`listening ${origin.port} ${sha256(origin.blobs.get('big')!)}\n`);
  const stop = (): void => {
    fs.rmSync(cert.dir, { recursive: true, force: true });
    void origin.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`serve-https: ${(err as Error).message}\n`);
  process.exit(2);
});

/**
 * Runnable byte server for namespace tests:
 *   node dist/test/helpers/serve-bytes.js [--port N] [--host ADDR] [--tcp] [--seed S]
 * Prints `listening <port>` when ready, then one JSON line per finished response with the
 * server-side socketInfo of the connection.
 */
import { startBytesServer } from './mptcp-server';

function parseArgs(argv: string[]): { port: number; host: string; mptcp: boolean; seed?: string } {
  const out: { port: number; host: string; mptcp: boolean; seed?: string } = { port: 0, host: '::', mptcp: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--tcp') out.mptcp = false;
    else if (a === '--mptcp') out.mptcp = true;
    else if (a === '--port') {
      out.port = Number(value());
      if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) throw new Error('--port must be 0..65535');
    } else if (a === '--host') out.host = value();
    else if (a === '--seed') out.seed = value();
    else throw new Error(`unknown argument ${a}`);
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const srv = await startBytesServer({
    ...args,
    onReport: (r) => process.stdout.write(JSON.stringify(r) + '\n'),
  });
  process.stdout.write(`listening ${srv.port} ${args.mptcp ? 'mptcp' : 'tcp'}\n`);
  const stop = (): void => { void srv.close().then(() => process.exit(0)); setTimeout(() => process.exit(0), 1000).unref(); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`serve-bytes: ${(err as { code?: string }).code ?? ''} ${(err as Error).message}\n`);
  process.exit(2);
});

/**
 * Runs electron/core/native/netlink.ts inside a network namespace for test/netlink.test.ts
 * (netlink acts in the caller's namespace, so the code under test has to run in there).
 *
 *   node netlink-agent.js                  requests on stdin, one JSON object a line:
 *                                          {id, op, ...}; answers {id, ok, value} | {id, ok: false, code, message};
 *                                          watch events as {event: 'pm' | 'link', data}
 *   node netlink-agent.js '<json>'         a batch {calls: [{fn, args}]}: prints the answers as one
 *                                          JSON array and exits
 *   node netlink-agent.js lifecycle <mode> checks that watches do not hold the process (see below)
 */
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import readline from 'node:readline';
import * as netlink from '../../electron/core/native/netlink';
import { listenFd, connectFd } from '../../electron/core/native/mptcp';

type Answer = { ok: true; value: unknown } | { ok: false; code: string; message: string };

function call(fn: string, args: unknown[]): Answer {
  const f = (netlink as unknown as Record<string, unknown>)[fn];
  if (typeof f !== 'function') return { ok: false, code: 'ENOFN', message: `netlink has no function ${fn}` };
  try {
    return { ok: true, value: (f as (...a: unknown[]) => unknown)(...args) };
  } catch (err) {
    const e = err as { code?: unknown; message?: string };
    return { ok: false, code: String(e.code ?? 'ENOCODE'), message: String(e.message) };
  }
}

const out = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n'); };

// ---- lifecycle modes: each prints what happened and must end by itself unless said otherwise ----

function lifecycle(mode: string): void {
  switch (mode) {
    case 'closed': {  // both watches closed: the loop is empty, the process exits
      const a = netlink.pmEvents(() => {});
      const b = netlink.linkWatch(() => {});
      a.close(); b.close(); a.close();
      out({ closed: [a.isClosed(), b.isClosed()] });
      return;
    }
    case 'unref': {  // open but unref'd: the process exits as with an unref'd timer
      netlink.pmEvents(() => {}).unref();
      netlink.linkWatch(() => {}).unref();
      out({ unref: true });
      return;
    }
    case 'open': {  // open and ref'd: the process stays (the test kills it)
      netlink.linkWatch(() => {});
      out({ open: true });
      return;
    }
    case 'throw': {  // a throwing callback reaches 'uncaughtException'; close() from inside works
      let seen = 0;
      const w = netlink.linkWatch(() => {
        seen++;
        w.close();
        throw new Error('boom from the callback');
      });
      process.on('uncaughtException', (err) => {
        out({ uncaught: err.message, seen, closed: w.isClosed() });
      });
      execFileSync('ip', ['link', 'add', 'nlthrow0', 'type', 'veth', 'peer', 'name', 'nlthrow1']);
      return;
    }
    default:
      out({ error: `unknown lifecycle mode ${mode}` });
      process.exitCode = 2;
  }
}

// ---- interactive mode ----

const watches = new Map<string, netlink.WatchHandle>();
const conns = new Map<number, net.Socket>();
const servers: net.Server[] = [];
let nextConn = 1;

function startPmEvents(): void {
  // Each callback queues a microtask; if callbacks run inside a callback scope, the previous
  // event's microtask has run by the time the next callback starts.
  let pending = false;
  watches.set('pm', netlink.pmEvents((ev) => {
    const previousMicrotaskRan = !pending;
    pending = true;
    queueMicrotask(() => { pending = false; });
    out({ event: 'pm', data: ev, previousMicrotaskRan });
  }));
}

function listen(host: string): Promise<number> {
  const server = net.createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); });
  servers.push(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd: listenFd({ host, port: 0 }) }, () => resolve((server.address() as net.AddressInfo).port));
  });
}

async function connect(address: string, port: number): Promise<{ conn: number; localAddress: string; localPort: number }> {
  const fd = await connectFd({ address, port, timeoutMs: 5000 });
  const sock = new net.Socket({ fd, readable: true, writable: true });
  sock.on('error', () => {});
  // One echoed byte: the connection is fully established on both sides before we answer.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('echo timed out')), 5000);
    sock.once('data', () => { clearTimeout(timer); resolve(); });
    sock.write('x');
  });
  const id = nextConn++;
  conns.set(id, sock);
  return { conn: id, localAddress: sock.localAddress ?? '', localPort: sock.localPort ?? 0 };
}

async function handle(req: Record<string, unknown>): Promise<unknown> {
  switch (req.op) {
    case 'call': {
      const a = call(String(req.fn), (req.args as unknown[]) ?? []);
      if (!a.ok) throw Object.assign(new Error(a.message), { code: a.code });
      return a.value;
    }
    case 'pmEvents': startPmEvents(); return true;
    case 'linkWatch':
      watches.set('link', netlink.linkWatch((ev) => out({ event: 'link', data: ev }), { routes: req.routes !== false }));
      return true;
    case 'unwatch': watches.get(String(req.which))?.close(); watches.delete(String(req.which)); return true;
    case 'listen': return listen(String(req.host));
    case 'connect': return connect(String(req.address), Number(req.port));
    case 'closeConn': {
      const s = conns.get(Number(req.conn));
      conns.delete(Number(req.conn));
      s?.end();
      s?.destroy();
      return true;
    }
    case 'exit':
      for (const w of watches.values()) w.close();
      for (const s of conns.values()) s.destroy();
      for (const s of servers) s.close();
      setImmediate(() => process.exit(0));
      return true;
    default: throw Object.assign(new Error(`unknown op ${String(req.op)}`), { code: 'ENOOP' });
  }
}

function interactive(): void {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let req: Record<string, unknown>;
    try { req = JSON.parse(line) as Record<string, unknown>; } catch { out({ ok: false, code: 'EJSON', message: line }); return; }
    handle(req).then(
      (value) => out({ id: req.id, ok: true, value }),
      (err: { code?: unknown; message?: string }) => out({ id: req.id, ok: false, code: String(err.code ?? 'ENOCODE'), message: String(err.message) }),
    );
  });
  // The test ending (or dying) closes our stdin: leave rather than linger in the namespace.
  rl.on('close', () => process.exit(0));
  out({ ready: true });
}

const [arg, mode] = process.argv.slice(2);
if (arg === 'lifecycle') lifecycle(String(mode));
else if (arg) {
  const batch = JSON.parse(arg) as { calls: Array<{ fn: string; args?: unknown[] }> };
  out(batch.calls.map((c) => call(c.fn, c.args ?? [])));
} else interactive();

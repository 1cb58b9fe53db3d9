/**
 * `braid helper`: the one privileged piece (CAP_NET_ADMIN) of a desktop install. It applies
 * transparent-mode rules for unprivileged Braid processes, each for its own user's traffic only,
 * over a local Unix socket whose peer it knows from the kernel (SO_PEERCRED).
 *
 * A caller's rules live exactly as long as its connection: when Braid exits, crashes or is killed,
 * the kernel closes the socket and the helper takes that user's rules out at once. The table itself
 * is guarded like every change Braid makes (the helper's guardian removes it if the helper dies).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BraidError, errorCode, errorMessage } from '../errors';
import { ensureGuardian } from '../guardian/guardian';
import { ownedByThisProcess, removeRecord, writeRecord } from '../guardian/record';
import { peerCredentials } from '../native/kernel-socket';
import { currentNetns } from '../paths/reconcile';
import type { Logger } from '../proxy/session';
import { applyTable, removeTable } from '../transparent/nft';
import { NFT_KIND, nftRecordFile, type NftRecord } from '../transparent/restorer';
import { parseBypass, renderRuleset, TABLE_FAMILY, TABLE_NAME, type RulesetSpec } from '../transparent/ruleset';
import type { UserspacePm } from '../paths/userspace-pm';
import { MAX_LINE, parseRequest, type HelperAnswer, type HelperRequest, type TransparentRequest } from './protocol';
import { checkCgroupOwnedBy, checkListenerOwnedBy, connectionUid } from './verify';
import { socketFd } from '../socket-fd';

interface Caller {
  uid: number;
  pid: number;
  spec: RulesetSpec | null;
  /** MPTCP connections of the caller's whose paths it may steer */
  tokens: Set<number>;
}

export interface HelperServerOptions {
  socketPath: string;
  stateDir: string | null;
  log: Logger;
  /** The path manager of `--paths-config`, while it is this namespace's (userspace) one. */
  paths?: () => UserspacePm | null;
}

/** At most this many connections steered per caller at once (they are forgotten when they close). */
const MAX_TOKENS = 65_536;

export class HelperServer {
  private server: net.Server | null = null;
  private readonly callers = new Map<net.Socket, Caller>();
  private queue: Promise<unknown> = Promise.resolve();
  private tableOn = false;

  constructor(private readonly opts: HelperServerOptions) {}

  async start(): Promise<void> {
    const { socketPath } = this.opts;
    fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    // A socket file left by a helper that was killed: nothing listens on it any more.
    if (fs.existsSync(socketPath) && !(await answers(socketPath))) fs.rmSync(socketPath, { force: true });
    const server = net.createServer((s) => this.onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(errorCode(err) === 'EADDRINUSE' ? new BraidError('EADDRINUSE', `another braid helper already serves ${socketPath}`) : err));
      server.listen(socketPath, () => resolve());
    });
    // Any local user may ask; each is served for their own traffic only (SO_PEERCRED, checks in verify.ts).
    fs.chmodSync(socketPath, 0o666);
    this.server = server;
  }

  async stop(): Promise<void> {
    for (const s of this.callers.keys()) s.destroy();
    this.callers.clear();
    await this.serial(() => this.render());
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    fs.rmSync(this.opts.socketPath, { force: true });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private onConnection(s: net.Socket): void {
    const fd = socketFd(s);
    let cred: { uid: number; pid: number };
    try {
      if (fd === null) throw new Error('no fd');
      cred = peerCredentials(fd);
    } catch (err) {
      this.opts.log.warn(`helper: cannot tell who connected (${errorMessage(err)}); refusing`);
      s.destroy();
      return;
    }
    const caller: Caller = { uid: cred.uid, pid: cred.pid, spec: null, tokens: new Set() };
    this.callers.set(s, caller);
    this.opts.log.info(`helper: uid ${cred.uid} (pid ${cred.pid}) connected`);
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) {
        s.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void this.handle(s, caller, line);
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      this.callers.delete(s);
      // The lifeline: whatever way the caller ended, its rules go now.
      if (caller.spec) {
        this.opts.log.info(`helper: uid ${caller.uid} (pid ${caller.pid}) gone; its rules are removed`);
        void this.serial(() => this.render());
      }
    });
  }

  private async handle(s: net.Socket, caller: Caller, line: string): Promise<void> {
    let id: number | null = null;
    const answer = (a: HelperAnswer): void => void (!s.destroyed && s.write(JSON.stringify(a) + '\n'));
    try {
      const req = parseRequest(line);
      id = req.id;
      if (req.op === 'hello') return answer({ id, ok: true, result: { uid: caller.uid, pid: caller.pid } });
      if (req.op === 'paths.connection' || req.op === 'paths.secondary') return answer({ id, ok: true, result: this.paths(caller, req) });
      if (req.op === 'transparent.clear') {
        caller.spec = null;
        await this.serial(() => this.render());
        return answer({ id, ok: true, result: null });
      }
      const spec = this.specFor(caller, req.params);
      const previous = caller.spec;
      caller.spec = spec;
      try {
        await this.serial(() => this.render());
      } catch (err) {
        caller.spec = previous;
        await this.serial(() => this.render()).catch(() => {});
        throw err;
      }
      answer({ id, ok: true, result: { table: `${TABLE_FAMILY} ${TABLE_NAME}` } });
    } catch (err) {
      answer({ id, ok: false, error: { code: errorCode(err), message: errorMessage(err) } });
    }
  }

  /**
   * A caller's wish for one of its own connections: only a connection whose first subflow the
   * kernel lists as the caller's (uid of the socket on that local port), and later only a token it
   * named before.
   */
  private paths(caller: Caller, req: Extract<HelperRequest, { op: 'paths.connection' | 'paths.secondary' }>): null {
    const pm = this.opts.paths?.() ?? null;
    if (!pm) throw new BraidError('ENOTSUP', 'this braid helper does not manage paths per connection (start it with --paths-config FILE, with paths.manager "userspace")');
    if (req.op === 'paths.secondary') {
      if (!caller.tokens.has(req.params.token)) throw new BraidError('EACCES', `connection ${req.params.token} was not registered by you`);
      pm.update(req.params.token, { secondary: req.params.state });
      return null;
    }
    const p = req.params;
    const owner = connectionUid(p.localPort);
    if (owner !== caller.uid) throw new BraidError('EACCES', `no connection of yours on local port ${p.localPort}${owner === null ? '' : ` (it is uid ${owner}'s)`}`);
    if (caller.tokens.size >= MAX_TOKENS) caller.tokens.clear();
    const allowed = p.allowed ? new Map(p.allowed.map((a) => [a.name, a.as] as const)) : null;
    pm.register(p.token, { allowed, secondary: 'idle', rule: p.rule }, undefined, p.localPort);
    caller.tokens.add(p.token);
    return null;
  }

  /** The caller's rules, built here from checked values: only its uid's sockets, only to its own listener. */
  private specFor(caller: Caller, p: TransparentRequest): RulesetSpec {
    checkCgroupOwnedBy(p.self, caller.uid, caller.pid);
    for (const sc of p.scopes) checkCgroupOwnedBy(sc, caller.uid, null);
    checkListenerOwnedBy(p.port, p.ipv6, caller.uid);
    for (const c of this.callers.values()) {
      if (c !== caller && c.uid === caller.uid && c.spec) throw new BraidError('EBUSY', `another Braid of yours (pid ${c.pid}) holds transparent mode`);
    }
    return {
      port: p.port,
      ipv6: p.ipv6,
      bypass: p.bypass.map(parseBypass),
      relay: p.relay,
      exclude: { mark: null, cgroups: [p.self] },
      uid: caller.uid,
      everything: p.everything,
      scopes: p.scopes,
      blockQuic: p.blockQuic,
    };
  }

  private async render(): Promise<void> {
    const specs = [...this.callers.values()].map((c) => c.spec).filter((x): x is RulesetSpec => x !== null);
    const file = this.opts.stateDir ? nftRecordFile(this.opts.stateDir) : null;
    if (specs.length === 0) {
      if (this.tableOn) await removeTable();
      this.tableOn = false;
      if (file && fs.existsSync(file)) removeRecord(file);
      return;
    }
    if (file) {
      ensureGuardian(path.dirname(file), this.opts.log);
      const summary = specs.map((sp) => `uid ${sp.uid}: ${sp.everything ? 'all TCP' : `${sp.scopes.length} braid run program(s)`} to 127.0.0.1:${sp.port}`).join('; ');
      const rec: NftRecord = { ...ownedByThisProcess(NFT_KIND), netns: currentNetns(), table: `${TABLE_FAMILY} ${TABLE_NAME}`, summary };
      writeRecord(file, rec);
    }
    await applyTable(renderRuleset(specs));
    this.tableOn = true;
  }
}

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socketPath);
    const done = (ok: boolean): void => {
      c.destroy();
      resolve(ok);
    };
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
    setTimeout(() => done(false), 1000).unref();
  });
}

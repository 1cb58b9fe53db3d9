/**
 * Child processes for tests: start one, wait (bounded) for a line that says it is ready, and make
 * sure it is gone at the end whatever happened. `prefix` runs the command through another one,
 * e.g. ['ip', 'netns', 'exec', NAME] to start it inside a network namespace.
 */
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Every Braid a test starts reads and writes a throwaway config and state directory, never the
// user's (children inherit these through the environment).
if (!process.env.BRAID_TEST_HOME) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-test-home-'));
  process.env.BRAID_TEST_HOME = home;
  process.env.BRAID_STATE_DIR = path.join(home, 'state');
  process.env.BRAID_CONFIG = path.join(home, 'config.json');
  process.once('exit', () => fs.rmSync(home, { recursive: true, force: true }));
}

/** dist/test/helpers -> dist/electron/core/cli/main.js */
export const CLI_PATH = path.resolve(__dirname, '..', '..', 'electron', 'core', 'cli', 'main.js');

export interface StartOptions {
  prefix?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** A line on stdout that means "ready"; its match is returned. */
  ready?: RegExp;
  timeoutMs?: number;
}

export interface Running {
  child: ChildProcess;
  match: RegExpMatchArray | null;
  stdout(): string;
  stderr(): string;
  /** True while the process has not exited. */
  alive(): boolean;
  /** Sends `signal`, escalates to SIGKILL after `graceMs`; resolves with how it ended. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export function startProcess(command: string, args: string[], opts: StartOptions = {}): Promise<Running> {
  const prefix = opts.prefix ?? [];
  const argv = [...prefix, command, ...args];
  const child = spawn(argv[0], argv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
    child.once('error', () => {
      live.delete(child);
      resolve({ code: null, signal: null });
    });
  });
  let exitedFlag = false;
  void exited.then(() => (exitedFlag = true));

  const running: Running = {
    child,
    match: null,
    stdout: () => out,
    stderr: () => err,
    alive: () => !exitedFlag && child.exitCode === null && child.signalCode === null,
    exited,
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      if (running.alive()) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
  };

  if (!opts.ready) return Promise.resolve(running);
  const ready = opts.ready;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise<Running>((resolve, reject) => {
    const check = (): void => {
      const m = ready.exec(out);
      if (m) {
        cleanup();
        running.match = m;
        resolve(running);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      child.kill('SIGKILL');
      reject(new Error(`${argv.join(' ')}: no line matching ${ready} within ${timeoutMs} ms\nstdout: ${out}\nstderr: ${err}`));
    }, timeoutMs);
    const onExit = (): void => {
      cleanup();
      reject(new Error(`${argv.join(' ')} exited before it was ready\nstdout: ${out}\nstderr: ${err}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.off('exit', onExit);
    };
    child.stdout!.on('data', check);
    child.once('exit', onExit);
    check();
  });
}

export interface BraidProxy extends Running {
  host: string;
  port: number;
  dial: string;
}

/** `braid up`'s ready line; groups: host, port, dial mode. */
export const LISTENING_LINE = /braid: proxy listening on \[?([^\]\s]+?)\]?:(\d+) \(socks5\+http, dial (\w+)[,)]/;

/**
 * In the root namespace a test must never touch the host's MPTCP endpoints: `braid up` there runs
 * with path management off unless the test says otherwise (tests in their own namespaces do).
 */
export function rootSafe(args: string[], prefix: string[] | undefined): string[] {
  if (prefix && prefix.length) return args;
  if (args[0] !== 'up' || args.includes('--paths') || args.includes('--help')) return args;
  return [...args, '--paths', 'off'];
}

/** Starts `braid up ...` and resolves once it prints its listening line. */
export async function startBraid(args: string[], opts: Omit<StartOptions, 'ready'> & { cli?: string } = {}): Promise<BraidProxy> {
  const r = await startProcess(process.execPath, [opts.cli ?? CLI_PATH, ...rootSafe(args, opts.prefix)], { ...opts, ready: LISTENING_LINE });
  const m = r.match!;
  return Object.assign(r, { host: m[1], port: Number(m[2]), dial: m[3] });
}

/** Runs a command to completion (bounded) and collects its output. */
export function runProcess(
  command: string,
  args: string[],
  opts: { prefix?: string[]; timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: Buffer } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: Buffer; stderr: string }> {
  const prefix = opts.prefix ?? [];
  const argv = [...prefix, command, ...args];
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(child);
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input);
    const timer = setTimeout(() => {
      err += `\n[killed after ${opts.timeoutMs ?? 30_000} ms]`;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    const done = (code: number | null, signal: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
    };
    child.once('close', done);
    child.once('error', (e) => {
      err += String(e);
      done(null, null);
    });
  });
}

/** `braid ...` to completion, for commands that exit on their own. */
export function runBraid(args: string[], opts: { prefix?: string[]; timeoutMs?: number } = {}) {
  return runProcess(process.execPath, [CLI_PATH, ...rootSafe(args, opts.prefix)], opts);
}

/** Polls until `probe` holds, at most `ms`; returns how long it took, or null when it never held. */
export async function within(ms: number, probe: () => Promise<boolean>, everyMs = 25): Promise<number | null> {
  const t0 = Date.now();
  while (Date.now() - t0 <= ms) {
    if (await probe()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return null;
}

/**
 * Running the platform's own proxy tools. Always execFile with an argv array: values such as a
 * network service name ("Wi-Fi 2") or a bypass host come from the system or the user and must never
 * pass through a shell. Every call is bounded so a wedged tool cannot hold up quit or recovery.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BraidError } from '../errors';

export interface ToolResult {
  stdout: string;
  stderr: string;
}

export interface ToolOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** A command line as data: what backends produce and what tests compare. */
export interface ToolCommand {
  tool: string;
  args: string[];
  /** Failure is logged, not raised (notifications, refreshes). */
  bestEffort?: boolean;
}

export type ToolRunner = (tool: string, args: string[], opts?: ToolOptions) => Promise<ToolResult>;

export const DEFAULT_TOOL_TIMEOUT_MS = 5000;

export function describeCommand(tool: string, args: string[]): string {
  return [tool, ...args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a)))].join(' ');
}

export const runTool: ToolRunner = (tool, args, opts = {}) => {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    execFile(
      tool,
      args,
      { env: opts.env ?? process.env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20, windowsHide: true, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: string | number | null };
        const cmd = describeCommand(tool, args);
        if (e.code === 'ENOENT') {
          return reject(new BraidError('ESYSPROXY_TOOL_MISSING', `${tool} is not installed or not on PATH (needed for: ${cmd})`, { cause: err }));
        }
        if (e.killed) {
          return reject(new BraidError('ESYSPROXY_TOOL_TIMEOUT', `${tool} did not finish within ${timeoutMs} ms (${cmd})`, { cause: err }));
        }
        const detail = (stderr || stdout || e.message).trim().split('\n').slice(0, 3).join(' / ');
        reject(new BraidError('ESYSPROXY_TOOL_FAILED', `${cmd} failed${typeof e.code === 'number' ? ` with exit code ${e.code}` : ''}: ${detail}`, { cause: err }));
      },
    );
  });
};

/** Runs commands in order; best-effort ones only log. Stops at the first real failure. */
export async function runCommands(run: ToolRunner, commands: ToolCommand[], opts: ToolOptions & { warn?: (msg: string) => void } = {}): Promise<void> {
  for (const c of commands) {
    try {
      await run(c.tool, c.args, opts);
    } catch (err) {
      if (!c.bestEffort) throw err;
      opts.warn?.(`${(err as Error).message} (ignored)`);
    }
  }
}

/**
 * Whether an executable is on PATH, without running it: probing KDE tools by running them would
 * start a KDE daemon on some systems.
 */
export function onPath(tool: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const dirs = (env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const exts = process.platform === 'win32' ? (env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';') : [''];
  for (const dir of dirs) {
    for (const ext of exts) {
      try {
        fs.accessSync(path.join(dir, tool + ext), fs.constants.X_OK);
        return true;
      } catch {
        // not in this directory
      }
    }
  }
  return false;
}

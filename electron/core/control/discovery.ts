/**
 * How local clients (`braid status`, the CLI, scripts) find a running Braid's control API: a small
 * file in the state directory with the address and token, readable only by the user.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { BraidError, errorMessage } from '../errors';

export interface ControlEndpoint {
  host: string;
  port: number;
  token: string;
  pid: number;
}

export const endpointFile = (stateDir: string): string => path.join(stateDir, 'control.json');

export function writeEndpoint(stateDir: string, ep: ControlEndpoint): void {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = endpointFile(stateDir);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(ep) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function removeEndpoint(stateDir: string): void {
  try {
    const ep = readEndpoint(stateDir);
    if (ep.pid === process.pid) fs.rmSync(endpointFile(stateDir), { force: true });
  } catch {
    /* nothing to remove */
  }
}

export function readEndpoint(stateDir: string): ControlEndpoint {
  const file = endpointFile(stateDir);
  let ep: ControlEndpoint;
  try {
    ep = JSON.parse(fs.readFileSync(file, 'utf8')) as ControlEndpoint;
  } catch {
    throw new BraidError('ENOTRUNNING', `braid is not running (no control endpoint at ${file}; start it with 'braid up')`);
  }
  try {
    process.kill(ep.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') throw new BraidError('ENOTRUNNING', `braid is not running (its control file ${file} is left over from pid ${ep.pid})`);
  }
  return ep;
}

/** Calls one command on a running Braid. */
export function callControl<T>(ep: ControlEndpoint, command: string, params: unknown = {}, timeoutMs = 5000): Promise<T> {
  const body = JSON.stringify(params);
  return new Promise<T>((resolve, reject) => {
    const req = http.request(
      {
        host: ep.host, port: ep.port, method: 'POST', path: `/api/${encodeURIComponent(command)}`, timeout: timeoutMs,
        headers: { Authorization: `Bearer ${ep.token}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          try {
            const r = JSON.parse(text) as { ok: boolean; result?: T; error?: { code: string; message: string } };
            if (r.ok) resolve(r.result as T);
            else reject(new BraidError(r.error?.code ?? 'ECONTROL', r.error?.message ?? `HTTP ${res.statusCode}`));
          } catch {
            reject(new BraidError('ECONTROL', `bad answer from the control API (HTTP ${res.statusCode})`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new BraidError('ETIMEDOUT', `control API did not answer within ${timeoutMs} ms`)));
    req.on('error', (err) => reject(err instanceof BraidError ? err : new BraidError('ECONTROL', `cannot reach the control API at ${ep.host}:${ep.port}: ${errorMessage(err)}`)));
    req.end(body);
  });
}

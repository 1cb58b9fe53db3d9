/** Starts the control API for a service: the handler table, the HTTP/WS server, the discovery file. */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { defaultConfig } from '../config/schema';
import { BraidError, errorCode } from '../errors';
import type { Logger } from '../proxy/session';
import type { BraidService } from '../service';
import { removeEndpoint, writeEndpoint } from './discovery';
import { ControlCore } from './handlers';
import { ControlServer, newToken } from './server';

export interface RunningControl {
  core: ControlCore;
  address: net.AddressInfo;
  token: string;
  url: string;
  close(): Promise<void>;
}

/** renderer/dist next to the package root, when the dashboard was built. */
export function dashboardDir(): string | null {
  let dir = __dirname;
  for (let i = 0; i < 8; i++, dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'renderer', 'dist');
    if (fs.existsSync(path.join(candidate, 'index.html'))) return candidate;
    if (fs.existsSync(path.join(dir, 'package.json'))) break;
  }
  return null;
}

export interface StartControlOptions {
  stateDir: string | null;
  log: Logger;
  /**
   * Who chose the address, when someone did (e.g. '--control'): a busy port is then an error naming
   * it. Only the default port moves to a free one when busy (another Braid, or Clash, has it).
   */
  chosenBy?: string;
}

export async function startControl(service: BraidService, opts: StartControlOptions): Promise<RunningControl> {
  const cfg = service.config.control;
  const token = cfg.token ?? newToken();
  const core = new ControlCore(service);
  const make = (port: number) => new ControlServer(core.handlers, core.bus, { host: cfg.host, port, token, staticDir: dashboardDir(), log: opts.log });
  let server = make(cfg.port);
  let address: net.AddressInfo;
  try {
    address = await server.start();
  } catch (err) {
    const where = `${net.isIPv6(cfg.host) ? `[${cfg.host}]` : cfg.host}:${cfg.port}`;
    if (errorCode(err) !== 'EADDRINUSE' || cfg.port === 0) throw err;
    const chosen = opts.chosenBy ?? (cfg.port !== defaultConfig().control.port ? "the config file's control.port" : null);
    if (chosen) throw new BraidError('EADDRINUSE', `${where} (from ${chosen}) is already in use, by another Braid or another program`, { cause: err });
    // Another Braid (or Clash) has the usual port: any free one will do, discovery tells clients.
    opts.log.warn(`control port ${cfg.port} is in use; using a free one`);
    server = make(0);
    address = await server.start();
  }
  if (opts.stateDir) writeEndpoint(opts.stateDir, { host: address.address, port: address.port, token, pid: process.pid });
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    core,
    address,
    token,
    url: `http://${host}:${address.port}/`,
    close: async () => {
      await server.stop();
      core.close();
      if (opts.stateDir) removeEndpoint(opts.stateDir);
    },
  };
}

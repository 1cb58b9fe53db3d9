/**
 * `braid doctor`: why a link carries nothing. With a running `braid up` it asks that instance
 * (`doctor.run` over its control API, progress as events), which uses its own config, relay and
 * live connections; without one it runs the same checks here, from the config file and its flags.
 */
import fs from 'node:fs';
import WebSocket from 'ws';
import { defaultConfigFile, defaultStateDir } from '../config/locations';
import { loadConfig } from '../config/load';
import type { DoctorReport, DoctorRunParams, EventFrame } from '../contract';
import { readEndpoint, type ControlEndpoint } from '../control/discovery';
import { exitStatus } from '../doctor/findings';
import { formatReport } from '../doctor/format';
import { parseTarget, runDoctor, type DoctorProgress } from '../doctor/run';
import { BraidError, errorCode, errorMessage } from '../errors';
import { parseRelayLink } from '../relay/share-link';
import { recoverAtStart, stderrLogger, str, usageError, type Command, type Values } from './common';

const RUN_LIMIT_MS = 10 * 60_000;

function params(values: Values): DoctorRunParams {
  const p: DoctorRunParams = {};
  if (values.speed === true) p.speed = true;
  const relay = str(values, 'relay');
  if (relay !== undefined) {
    try {
      parseRelayLink(relay);
    } catch (err) {
      throw usageError(`--relay: ${errorMessage(err)}`);
    }
    p.relay = relay;
  }
  const speedUrl = str(values, 'speed-url');
  if (speedUrl !== undefined) {
    if (!/^https?:\/\/[^/\s]+/.test(speedUrl)) throw usageError(`--speed-url must be an http:// or https:// URL, got '${speedUrl}'`);
    p.speedUrl = speedUrl;
    p.speed = true;
  }
  const portal = str(values, 'portal-url');
  if (portal !== undefined) {
    if (!/^http:\/\/[^/\s]+/.test(portal)) throw usageError(`--portal-url must be an http:// URL (a portal intercepts plain HTTP), got '${portal}'`);
    p.portalUrl = portal;
  }
  const target = str(values, 'target');
  if (target !== undefined) {
    parseTarget(target);
    p.target = target;
  }
  const seconds = str(values, 'seconds');
  if (seconds !== undefined) {
    if (!/^\d{1,2}$/.test(seconds) || Number(seconds) < 1 || Number(seconds) > 10) throw usageError(`--seconds must be a whole number from 1 to 10, got '${seconds}'`);
    p.seconds = Number(seconds);
  }
  return p;
}

function showProgress(p: DoctorProgress): void {
  if (p.finding) return;
  process.stderr.write(`braid: doctor [${p.done}/${p.total}] ${p.step}\n`);
}

/** Runs `doctor.run` on a running Braid over its WebSocket, printing its progress events. */
function runRemote(ep: ControlEndpoint, p: DoctorRunParams, onProgress: ((p: DoctorProgress) => void) | null): Promise<DoctorReport> {
  return new Promise((resolve, reject) => {
    const host = ep.host.includes(':') ? `[${ep.host}]` : ep.host;
    const ws = new WebSocket(`ws://${host}:${ep.port}/api/ws?token=${encodeURIComponent(ep.token)}`);
    const timer = setTimeout(() => finish(new BraidError('ETIMEDOUT', `the running braid did not finish the diagnosis within ${RUN_LIMIT_MS / 60_000} minutes`)), RUN_LIMIT_MS);
    let settled = false;
    const finish = (err: Error | null, report?: DoctorReport): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      if (err) reject(err);
      else resolve(report!);
    };
    ws.on('open', () => ws.send(JSON.stringify({ id: 1, command: 'doctor.run', params: p })));
    ws.on('message', (data) => {
      let frame: EventFrame | { id: unknown; ok: boolean; result?: DoctorReport; error?: { code: string; message: string } };
      try {
        frame = JSON.parse(data.toString()) as typeof frame;
      } catch {
        return;
      }
      if ('event' in frame) {
        if (frame.event === 'doctor.progress' && onProgress) onProgress(frame.data as DoctorProgress);
        return;
      }
      if (frame.id !== 1) return;
      if (frame.ok) finish(null, frame.result);
      else finish(new BraidError(frame.error?.code ?? 'ECONTROL', frame.error?.message ?? 'the running braid refused the diagnosis'));
    });
    ws.on('error', (err) => finish(new BraidError('ECONTROL', `cannot reach the running braid's control API at ${ep.host}:${ep.port}: ${errorMessage(err)}`)));
    ws.on('close', () => finish(new BraidError('ECONTROL', 'the running braid closed the control connection before the diagnosis ended')));
  });
}

async function runDoctorCommand(values: Values): Promise<number> {
  const p = params(values);
  const json = values.json === true;
  const stateDir = str(values, 'state-dir') ?? defaultStateDir();
  const log = stderrLogger(false);
  await recoverAtStart(stateDir, log);
  const onProgress = json ? null : showProgress;
  let report: DoctorReport;
  let ep: ControlEndpoint | null = null;
  try {
    ep = readEndpoint(stateDir);
  } catch (err) {
    if (errorCode(err) !== 'ENOTRUNNING') throw err;
  }
  if (ep) {
    process.stderr.write(`braid: doctor: asking the running braid (pid ${ep.pid})\n`);
    report = await runRemote(ep, p, onProgress);
  } else {
    const explicit = str(values, 'config');
    const file = explicit ?? defaultConfigFile();
    const config = loadConfig({ file: explicit !== undefined || fs.existsSync(file) ? file : undefined });
    process.stderr.write('braid: doctor: no braid up is running; checking with the config file and flags\n');
    report = await runDoctor({ config, stateDir, running: null }, p, onProgress ?? (() => {}));
  }
  if (json) process.stdout.write(JSON.stringify({ ok: report.ok, findings: report.findings, speed: report.speed }, null, 2) + '\n');
  else process.stdout.write(formatReport(report));
  return exitStatus(report);
}

export const doctor: Command = {
  summary: 'find out why a path carries nothing: kernel, interfaces, routes, middleboxes, the relay, speed',
  usage: 'braid doctor [--json] [--speed] [--relay LINK] [--speed-url URL] [--target HOST[:PORT]] [--portal-url URL] [--seconds N] [--config FILE] [--state-dir DIR]',
  details: [
    'With a running braid up it asks that instance (its config, relay and live connections); otherwise it uses the',
    'config file and these flags. --speed measures each path alone and all together, both directions, through the',
    "relay's speed test (or by downloading --speed-url without a relay), --seconds per direction and path (default 6).",
    'Exit status: 0 when nothing keeps Braid from using every path, 1 when something does, 2 for a usage error.',
  ],
  options: {
    json: { type: 'boolean' },
    speed: { type: 'boolean' },
    relay: { type: 'string' },
    'speed-url': { type: 'string' },
    target: { type: 'string' },
    'portal-url': { type: 'string' },
    seconds: { type: 'string' },
    config: { type: 'string' },
    'state-dir': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  run: runDoctorCommand,
};

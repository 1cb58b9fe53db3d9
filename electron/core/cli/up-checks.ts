/**
 * What `braid up` checks before it starts, and how it explains a failure: in terms of the flags
 * the user typed (not the config fields they map to), with what to change.
 */
import fs from 'node:fs';
import { ConfigError, validateConfig, type ConfigInput, type ProxyConfig } from '../config/schema';
import { BraidError, errorCode, errorMessage } from '../errors';
import type { Logger } from '../proxy/session';
import { usageError } from './common';

/** The flag behind each config field a flag sets, so that an error names what the user typed. */
function flagFor(field: string, relayFlag: string): string | null {
  if (field === 'proxy.auth.username') return '--auth USER';
  if (field === 'proxy.auth.password') return '--auth PASS';
  const flags: Record<string, string> = { 'proxy.host': '--host', 'proxy.port': '--port', 'proxy.dial': '--dial', 'proxy.auth': '--auth', 'relay.link': relayFlag, 'paths.enabled': '--paths', 'control.host': '--control', 'control.port': '--control' };
  return flags[field] ?? null;
}

/** The flags alone, validated as the config will be, with errors that name the flag, not the field. */
export function checkFlags(overrides: ConfigInput, relayFlag: string): void {
  try {
    validateConfig(overrides);
  } catch (err) {
    const flag = err instanceof ConfigError ? flagFor(err.field, relayFlag) : null;
    if (flag) throw usageError(`${flag} ${err instanceof ConfigError ? err.problem : ''}`);
    throw err;
  }
}

function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Why the proxy did not start, said with what to change on the command line. */
export function proxyStartError(err: unknown, proxy: ProxyConfig): BraidError {
  const where = hostPort(proxy.host, proxy.port);
  const code = errorCode(err);
  if (code === 'EADDRINUSE') return new BraidError(code, `cannot listen on ${where}: the address is already in use (by another Braid or another program); choose another port with --port`);
  if (code === 'EACCES') return new BraidError(code, `cannot listen on ${where}: ports below 1024 need privileges; choose another port with --port`);
  if (code === 'EADDRNOTAVAIL') return new BraidError(code, `cannot listen on ${where}: ${proxy.host} is not an address of this machine; choose another with --host`);
  return new BraidError('ESTART', `the proxy did not start: ${errorMessage(err)}`);
}

/** An address chosen with --control that could not be had: an error, never a silent move elsewhere. */
export function controlStartError(err: unknown, flagValue: string): BraidError {
  const code = errorCode(err);
  const why = code === 'EADDRINUSE' ? 'the address is already in use (by another Braid or another program)' : errorMessage(err);
  return new BraidError(code === 'EUNKNOWN' ? 'ESTART' : code, `--control ${flagValue}: ${why}; choose another HOST:PORT, or --control off`);
}

/** The config file holds the relay link (a secret): others must not be able to read it. */
export function warnReadableConfig(file: string, log: Logger): void {
  try {
    const st = fs.statSync(file);
    if (!(st.mode & 0o044)) return;
    const input = JSON.parse(fs.readFileSync(file, 'utf8')) as ConfigInput;
    if (input?.relay?.link) log.warn(`${file} holds the relay link's secret and is readable by other users: chmod 600 ${file}`);
  } catch {
    // Unreadable or not JSON: loading it reports that.
  }
}

/**
 * A Braid-like process for the KDE system-proxy tests: detects the backend from its environment
 * (XDG_CURRENT_DESKTOP=KDE gives kde+gnome), enables the system proxy, prints "enabled <backend>"
 * and waits to be killed. Refuses to run unless every settings store it could touch is a
 * throwaway one (keyfile gsettings, a temporary XDG_CONFIG_HOME).
 *   node sysproxy-desktop-child.js --state DIR [--port N]
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { detectBackend } from '../../electron/core/sysproxy/detect';
import { SystemProxyManager } from '../../electron/core/sysproxy/manager';

const { values } = parseArgs({ options: { state: { type: 'string' }, port: { type: 'string' } } });

async function main(): Promise<void> {
  // `node --test dist/test/` also runs every file under test/, helpers included: bare, do nothing.
  if (values.state === undefined) return;
  if (process.env.GSETTINGS_BACKEND !== 'keyfile' || !process.env.XDG_CONFIG_HOME?.startsWith(os.tmpdir() + path.sep)) {
    throw new Error('run only with GSETTINGS_BACKEND=keyfile and a temporary XDG_CONFIG_HOME');
  }
  setTimeout(() => process.exit(99), 60_000).unref();
  const backend = await detectBackend();
  await new SystemProxyManager({ backend, stateDir: values.state }).enable({ host: '127.0.0.1', port: Number(values.port ?? 1080), bypass: ['localhost', '127.0.0.0/8'] });
  process.stdout.write(`enabled ${backend.name}\n`);
  setInterval(() => {}, 1000);
}

main().catch((err) => {
  process.stderr.write(`sysproxy-desktop-child: ${(err as Error).message} [${(err as { code?: string }).code}]\n`);
  process.exit(1);
});

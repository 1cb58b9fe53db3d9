/**
 * Everything the desktop app runs in its main process, assembled without Electron (as `braid up`
 * assembles the headless mode): recovery of what a crashed Braid left changed first, then the service, the
 * control API, the system-proxy hook and the on/off controller. The Electron glue adds only the
 * window, the tray, IPC and notifications around this object.
 */
import fs from 'node:fs';
import { loadConfig, watchConfigFile } from '../config/load';
import type { ConfigInput } from '../config/schema';
import { ControlCore } from '../control/handlers';
import { startControl, type RunningControl } from '../control/start';
import { errorMessage } from '../errors';
import { prepareLongRunningProcess } from '../process-setup';
import type { Logger } from '../proxy/session';
import { BraidService } from '../service';
import type { SystemProxyBackend } from '../sysproxy/backend';
import { createBackend, detectBackend } from '../sysproxy/detect';
import { installRestoreHooks } from '../sysproxy/hooks';
import { SystemProxyManager } from '../sysproxy/manager';
import { describeRecovery, recoverLeftovers, type Recovery } from '../guardian/recover';
import { DesktopController } from './controller';
import type { DesktopSettings } from './settings';
import { DesktopSystemProxy } from './system-proxy-control';

export interface DesktopRuntimeOptions {
  /** Read when it exists; changes made in the app (a path policy, a relay link) are saved to it. */
  configFile: string;
  stateDir: string;
  log: Logger;
  settings: Pick<DesktopSettings, 'proxyOnLaunch' | 'systemProxyOnLaunch'>;
  /** The system proxy backend: undefined detects this desktop's; null means none. */
  backend?: SystemProxyBackend | null;
  /** Config on top of the file (tests: port 0, paths off, no control API). */
  overrides?: ConfigInput;
  /** Restore the system proxy on SIGINT/SIGTERM/SIGHUP and process exit (the app: yes). */
  restoreHooks?: boolean;
  /** Watch the config file for changes made outside the app (`braid paths set`). */
  watchConfig?: boolean;
  /** The flag that chose the control API's address, if one did (see startControl). */
  controlChosenBy?: string;
}

export interface DesktopRuntime {
  service: BraidService;
  core: ControlCore;
  control: RunningControl | null;
  systemProxy: DesktopSystemProxy;
  controller: DesktopController;
  /** What a previous Braid left changed and was put back at this start, or by its guardian since. */
  recovered: Recovery[];
  /** Problems worth showing the user once (no system proxy backend, control API failed, ...). */
  problems: string[];
  /** Why the proxy or the control API did not start (also among problems), for callers that explain it their own way. */
  proxyError: unknown;
  controlError: unknown;
  /** Restores the system proxy, then stops everything; idempotent, bounded, never throws. */
  shutdown(): Promise<{ systemProxyRestored: boolean }>;
}

export async function startDesktopRuntime(opts: DesktopRuntimeOptions): Promise<DesktopRuntime> {
  const { log, stateDir, configFile } = opts;
  const problems: string[] = [];
  // The desktop app's entry; `braid up` did both already (each is done once per process).
  prepareLongRunningProcess(log);
  const fileExists = fs.existsSync(configFile);
  const config = loadConfig({ file: fileExists ? configFile : undefined, overrides: opts.overrides });

  // Before anything else: whatever a previous run changed and could not put back (it was killed,
  // and its guardian too) is undone now; what guardians did meanwhile is reported, once.
  // A backend given by the caller (tests: gsettings on a throwaway keyfile) restores too.
  const given = opts.backend ?? null;
  const recovered = await recoverLeftovers(stateDir, { log, systemProxyBackend: given ? (name) => (name === given.name ? given : createBackend(name)) : undefined });
  for (const r of recovered) {
    if (r.ok) log.warn(describeRecovery(r));
    else problems.push(describeRecovery(r));
  }

  let backend: SystemProxyBackend | null = null;
  let unavailableReason: string | undefined;
  if (opts.backend === undefined) {
    try {
      backend = await detectBackend();
    } catch (err) {
      unavailableReason = errorMessage(err);
    }
  } else {
    backend = opts.backend;
    if (!backend) unavailableReason = 'no system proxy backend on this desktop';
  }
  const manager = backend ? new SystemProxyManager({ backend, stateDir, log }) : null;
  if (unavailableReason) log.info(`system proxy: ${unavailableReason}`);

  const service = new BraidService({ config, configFile, stateDir, log });
  service.paths?.start();
  service.stats.start();

  let control: RunningControl | null = null;
  let controlError: unknown = null;
  if (config.control.enabled) {
    try {
      control = await startControl(service, { stateDir, log, chosenBy: opts.controlChosenBy });
    } catch (err) {
      controlError = err;
      problems.push(`the control API (for braid status and the browser dashboard) did not start: ${errorMessage(err)}`);
    }
  }
  const core = control?.core ?? new ControlCore(service);
  const systemProxy = new DesktopSystemProxy({ manager, unavailableReason, proxyAddress: () => service.proxy?.address ?? null, log });
  core.systemProxy = systemProxy;
  const controller = new DesktopController({ service, handlers: core.handlers, systemProxy, log });
  controller.install();
  const uninstallHooks = manager && opts.restoreHooks ? installRestoreHooks(manager, { log }) : () => {};

  const unwatch =
    opts.watchConfig === false
      ? () => {}
      : watchConfigFile(
          configFile,
          () => void service.adoptConfig(loadConfig({ file: configFile, overrides: opts.overrides })).catch((e) => log.warn(errorMessage(e))),
          (err) => log.warn(`config file ${configFile}: ${errorMessage(err)} (keeping the previous config)`),
        );

  let stopping: Promise<{ systemProxyRestored: boolean }> | null = null;
  const shutdown = (): Promise<{ systemProxyRestored: boolean }> =>
    (stopping ??= (async () => {
      unwatch();
      const r = await controller.shutdown();
      try {
        if (control) await control.close();
        else core.close();
        await service.stop();
      } catch (err) {
        log.warn(`stopping: ${errorMessage(err)}`);
      }
      uninstallHooks();
      return r;
    })());

  let proxyError: unknown = null;
  if (opts.settings.proxyOnLaunch) {
    try {
      await controller.turnOn({ systemProxy: opts.settings.systemProxyOnLaunch && manager !== null }, { remember: false });
    } catch (err) {
      proxyError = err;
      problems.push(`the proxy did not start: ${errorMessage(err)}`);
      service.reportError('desktop', err);
    }
  }
  return { service, core, control, systemProxy, controller, recovered, problems, proxyError, controlError, shutdown };
}

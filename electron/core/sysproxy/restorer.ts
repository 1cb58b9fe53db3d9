/** The system proxy as a kind of guarded state (see ../guardian/restorers.ts). */
import type { GuardedRecord, Restorer } from '../guardian/restorers';
import { hostPort } from './backend';
import { createBackend } from './detect';
import type { JournalRecord } from './journal';
import { SystemProxyManager } from './manager';

export const systemProxyRestorer: Restorer = {
  describe(rec: GuardedRecord): string[] {
    const r = rec as unknown as JournalRecord;
    return [`system proxy (${r.backend}) points at ${hostPort(r.settings.host, r.settings.port)}`];
  },
  async restore(file, rec, ctx): Promise<string> {
    const r = rec as unknown as JournalRecord;
        // Restore where it was applied (the journal keeps where the settings live), not wherever this
    // process's environment points.
    const backend = ctx.systemProxyBackend?.(r.backend) ?? createBackend(r.backend, r.backendEnv ? { ...process.env, ...r.backendEnv } : undefined);
    const manager = new SystemProxyManager({ backend, journalPath: file, log: ctx.log, backendFor: (name) => (name === backend.name ? backend : createBackend(name, backend.env)) });
    const outcome = await manager.recoverAfterCrash({ exitedPid: ctx.exitedPid });
    switch (outcome) {
      case 'restored':
        return `system proxy (${r.backend}): your previous settings are back`;
      case 'kept-user-settings':
        return `system proxy (${r.backend}): you had changed it since Braid set it; your choice was left in place`;
      case 'none':
        return `system proxy (${r.backend}): nothing left to restore`;
      default:
        throw new Error(`system proxy journal still owned (${outcome})`);
    }
  },
};

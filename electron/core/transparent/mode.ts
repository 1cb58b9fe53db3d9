/**
 * Transparent mode and `braid run` scopes: keeps the nftables table equal to what is wanted (mode on,
 * or at least one `braid run` scope) and the transparent listener running while it is needed.
 *
 * Privileges: with CAP_NET_ADMIN (braid up as root, or with that capability) Braid applies the
 * table itself and marks its own outbound sockets (SO_MARK), which the rules let through. Without
 * it, the privileged helper (`braid helper`, see ../privileged/) applies the table for this user
 * only, and Braid's own sockets are told apart by its cgroup. Either way the table is a guarded
 * change: removed at exit, and by the guardian (or the helper) when this process dies.
 */
import dns from 'node:dns';
import net from 'node:net';
import { BraidError, errorCode, errorMessage } from '../errors';
import { ensureGuardian } from '../guardian/guardian';
import { ownedByThisProcess, removeRecord, writeRecord } from '../guardian/record';
import { currentNetns } from '../paths/reconcile';
import { hasNetAdmin } from '../paths/manager';
import type { Logger } from '../proxy/session';
import type { TransparentConfig } from '../config/schema';
import { applyTable, removeTable } from './nft';
import { NFT_KIND, nftRecordFile, type NftRecord } from './restorer';
import { DEFAULT_BYPASS, parseBypass, renderRuleset, TABLE_FAMILY, TABLE_NAME, validateCgroup, type CgroupRef, type RulesetSpec } from './ruleset';
import path from 'node:path';
import fs from 'node:fs';
import { cgroupDir, enterNewScope, type Scope as CgroupScope } from './cgroup';
import { HelperClient } from '../privileged/client';
import type { TransparentRequest } from '../privileged/protocol';

/** The firewall mark on Braid's own outbound sockets while its table is in place ("brai"). */
export const BRAID_MARK = 0x62726169;

export interface TransparentView {
  /** Transparent mode (all apps) is switched on in the config. */
  enabled: boolean;
  /** The table is in place and the listener runs (mode on, or `braid run` scopes). */
  active: boolean;
  /** Who applied the table: this process, or the privileged helper. */
  via: 'braid' | 'helper' | null;
  /** The transparent listener, e.g. "127.0.0.1:41235 and [::1]:41235". */
  listen: string | null;
  bypass: string[];
  blockQuic: boolean;
  /** `braid run` programs being redirected now. */
  scopes: number;
  error: string | null;
}

export interface TransparentHost {
  config(): TransparentConfig;
  relayHost(): string | null;
  /** Starts the proxy's transparent listener (or returns the running one). */
  startListener(): Promise<{ port: number; ipv6: boolean }>;
  stopListener(): Promise<void>;
  stateDir: string | null;
  log: Logger;
}

interface Scope {
  id: number;
  cgroup: CgroupRef;
  pid: number;
}

export class TransparentMode {
  private readonly scopes = new Map<number, Scope>();
  private nextScope = 1;
  private applied: { spec: RulesetSpec; via: 'braid' | 'helper' } | null = null;
  private listen: { port: number; ipv6: boolean } | null = null;
  private error: string | null = null;
  private marking = false;
  private queue: Promise<unknown> = Promise.resolve();
  /** Without CAP_NET_ADMIN: the privileged helper, and this process's own cgroup its rules let through. */
  private helper: HelperClient | null = null;
  private selfScope: CgroupScope | null = null;
  private helperRequest: string | null = null;

  constructor(private readonly host: TransparentHost) {}

  /** SO_MARK for outbound sockets: set before the table goes in, so no dial of ours is ever redirected. */
  mark(): number {
    return this.marking ? BRAID_MARK : 0;
  }

  view(): TransparentView {
    const cfg = this.host.config();
    const l = this.listen;
    return {
      enabled: cfg.enabled,
      active: this.applied !== null,
      via: this.applied?.via ?? null,
      listen: l ? `127.0.0.1:${l.port}${l.ipv6 ? ` and [::1]:${l.port}` : ''}` : null,
      bypass: [...(cfg.bypass ?? DEFAULT_BYPASS)],
      blockQuic: cfg.blockQuic,
      scopes: this.scopes.size,
      error: this.error,
    };
  }

  /** One change at a time: a toggle, a `braid run` and a proxy restart can all arrive together. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  /** Brings the table in line with the config and the scopes. Resolves with the view; never throws. */
  sync(): Promise<TransparentView> {
    return this.serial(async () => {
      try {
        await this.syncLocked();
        this.error = null;
      } catch (err) {
        this.error = errorMessage(err);
        this.host.log.warn(`transparent mode: ${this.error}`);
      }
      return this.view();
    });
  }

  /** Like sync(), but a failure is the caller's (the `transparent.set` command reports it). */
  async syncOrThrow(): Promise<TransparentView> {
    const v = await this.sync();
    if (v.error) throw new BraidError('ETRANSPARENT', v.error);
    return v;
  }

  /** Redirects the TCP of a cgroup (`braid run`) until detach(). */
  async attach(cgroup: CgroupRef, pid: number): Promise<{ id: number; view: TransparentView }> {
    validateCgroup(cgroup);
    if (!fs.existsSync(cgroupDir(cgroup.path))) throw new BraidError('EBADCGROUP', `cgroup ${cgroup.path} does not exist under /sys/fs/cgroup`);
    const id = this.nextScope++;
    this.scopes.set(id, { id, cgroup, pid });
    const view = await this.syncOrThrow().catch((err) => {
      this.scopes.delete(id);
      void this.sync();
      throw err;
    });
    return { id, view };
  }

  async detach(id: number): Promise<boolean> {
    const had = this.scopes.delete(id);
    if (had) await this.sync();
    return had;
  }

  /** Removes the table but keeps the scopes (the proxy restarts; sync() puts it back). */
  suspend(): Promise<void> {
    return this.serial(async () => {
      try {
        await this.removeLocked();
      } catch (err) {
        this.host.log.warn(`transparent mode: removing the nftables table failed: ${errorMessage(err)}`);
      }
      this.listen = null;
    });
  }

  /** Removes the table and stops the listener (shutdown). */
  stop(): Promise<void> {
    this.scopes.clear();
    return this.serial(async () => {
      try {
        await this.removeLocked();
      } catch (err) {
        this.host.log.warn(`transparent mode: removing the nftables table failed: ${errorMessage(err)}; the guardian removes it when Braid exits`);
      }
      await this.host.stopListener();
      this.listen = null;
      this.selfScope?.close();
      this.selfScope = null;
    });
  }

  private async syncLocked(): Promise<void> {
    // A `braid run` whose program is gone (killed before it could detach) needs no rule any more.
    for (const s of this.scopes.values()) if (!fs.existsSync(cgroupDir(s.cgroup.path))) this.scopes.delete(s.id);
    const cfg = this.host.config();
    if (!cfg.enabled && this.scopes.size === 0) {
      await this.removeLocked();
      await this.host.stopListener();
      this.listen = null;
      return;
    }
    if (!hasNetAdmin()) return this.syncViaHelper(cfg);
    this.listen = await this.host.startListener();
    const spec: RulesetSpec = {
      port: this.listen.port,
      ipv6: this.listen.ipv6,
      bypass: (cfg.bypass ?? DEFAULT_BYPASS).map(parseBypass),
      relay: await this.relayAddresses(),
      exclude: { mark: BRAID_MARK, cgroups: [] },
      // As root (or with CAP_NET_ADMIN) Braid redirects every user's TCP on this host.
      uid: null,
      everything: cfg.enabled,
      scopes: [...this.scopes.values()].map((s) => s.cgroup),
      blockQuic: cfg.blockQuic,
    };
    if (this.applied && JSON.stringify(this.applied.spec) === JSON.stringify(spec)) return;
    this.marking = true;
    const file = this.recordFile();
    if (file) {
      ensureGuardian(path.dirname(file), this.host.log);
      const rec: NftRecord = { ...ownedByThisProcess(NFT_KIND), netns: currentNetns(), table: `${TABLE_FAMILY} ${TABLE_NAME}`, summary: describeSpec(spec) };
      writeRecord(file, rec);
    }
    await applyTable(renderRuleset(spec));
    this.applied = { spec, via: 'braid' };
    this.host.log.info(`transparent mode: ${describeSpec(spec)}`);
  }

  /**
   * Unprivileged: the helper applies the rules for this user only. Braid's own dials are told apart
   * by cgroup: this process moves into a cgroup of its own first (under its current one, which a
   * desktop session delegates to the user), and every socket it makes from then on carries it.
   */
  private async syncViaHelper(cfg: TransparentConfig): Promise<void> {
    this.selfScope ??= enterNewScope(`braid-self-${process.pid}`);
    this.listen = await this.host.startListener();
    const req: TransparentRequest = {
      port: this.listen.port,
      ipv6: this.listen.ipv6,
      bypass: [...(cfg.bypass ?? DEFAULT_BYPASS)],
      relay: await this.relayAddresses(),
      self: this.selfScope.ref,
      everything: cfg.enabled,
      scopes: [...this.scopes.values()].map((s) => s.cgroup),
      blockQuic: cfg.blockQuic,
    };
    const key = JSON.stringify(req);
    if (this.applied && this.helperRequest === key) return;
    this.helper ??= new HelperClient(undefined, (why) => this.helperLost(why));
    await this.helper.apply(req);
    this.helperRequest = key;
    const spec: RulesetSpec = {
      ...req, bypass: req.bypass.map(parseBypass), exclude: { mark: null, cgroups: [req.self] }, uid: process.getuid?.() ?? null,
    };
    this.applied = { spec, via: 'helper' };
    this.host.log.info(`transparent mode (through the braid helper): ${describeSpec(spec)}`);
  }

  private helperLost(why: string): void {
    if (!this.applied || this.applied.via !== 'helper') return;
    this.applied = null;
    this.helperRequest = null;
    this.error = `${why}; trying again`;
    this.host.log.warn(`transparent mode: ${why}; its rules are gone, trying again in 2 s`);
    setTimeout(() => void this.sync(), 2000).unref();
  }

  private async removeLocked(): Promise<void> {
    if (this.applied?.via === 'helper') {
      this.applied = null;
      this.helperRequest = null;
      await this.helper?.clear();
      return;
    }
    if (!this.applied) return;
    await removeTable();
    this.applied = null;
    this.marking = false;
    const file = this.recordFile();
    if (file) removeRecord(file);
  }

  private recordFile(): string | null {
    return this.host.stateDir ? nftRecordFile(this.host.stateDir) : null;
  }

  private async relayAddresses(): Promise<string[]> {
    const host = this.host.relayHost();
    if (!host) return [];
    if (net.isIP(host)) return [host];
    try {
      return (await dns.promises.lookup(host, { all: true })).map((a) => a.address);
    } catch (err) {
      this.host.log.warn(`transparent mode: cannot resolve the relay ${host} (${errorCode(err)}); its connections rely on Braid's mark alone`);
      return [];
    }
  }
}

export function describeSpec(spec: RulesetSpec): string {
  const parts: string[] = [];
  if (spec.everything) parts.push(`redirects ${spec.uid === null ? 'all' : `uid ${spec.uid}'s`} outbound TCP`);
  if (spec.scopes.length) parts.push(`redirects the TCP of ${spec.scopes.length} braid run program${spec.scopes.length === 1 ? '' : 's'}`);
  parts.push(`to 127.0.0.1:${spec.port}${spec.ipv6 ? ` and [::1]:${spec.port}` : ''}`);
  parts.push(`${spec.bypass.length} bypass range${spec.bypass.length === 1 ? '' : 's'}`);
  if (spec.blockQuic) parts.push('UDP 443 (QUIC) rejected');
  return parts.join(', ');
}

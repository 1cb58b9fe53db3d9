/**
 * Keeps the kernel's MPTCP endpoints equal to the policy. The plan is a pure function of what is
 * wanted, what the kernel has and what we created, so it is the same whether it runs after a link
 * event, a policy change or a restart. Endpoints we did not create (NetworkManager, mptcpd, an
 * admin's `ip mptcp endpoint add`) are never changed: an address that already has one is reported
 * as managed elsewhere.
 */
import fs from 'node:fs';
import path from 'node:path';
import { errorCode, errorMessage } from '../errors';
import { ensureGuardian } from '../guardian/guardian';
import { ownedByThisProcess, ownerAlive, removeRecord, writeRecord, type OwnerFields } from '../guardian/record';
import type { PmEndpoint, PmLimits } from '../native/netlink';
import type { InterfaceState } from './inventory';
import { policyFor, type PathPolicy, type PathsConfig } from './policy';

export interface DesiredEndpoint {
  address: string;
  ifindex: number;
  ifname: string;
  backup: boolean;
}

export interface OwnedEndpoint {
  id: number;
  address: string;
  ifindex: number;
  /** For saying what was changed; absent in records written by older versions. */
  ifname?: string;
  backup: boolean;
}

/** The guardian record of what a Reconciler changed (kind 'mptcp-endpoints', see ./restorer.ts). */
export interface EndpointsRecord extends OwnerFields {
  /** The network namespace the endpoints live in ('net:[inode]'): only a process there can remove them. */
  netns: string | null;
  owned: OwnedEndpoint[];
  originalLimits: PmLimits | null;
  raisedTo: PmLimits | null;
}

export const ENDPOINTS_KIND = 'mptcp-endpoints';

/** This process's network namespace, as /proc names it. */
export function currentNetns(): string | null {
  try {
    return fs.readlinkSync('/proc/self/ns/net');
  } catch {
    return null;
  }
}

export type Step =
  | { op: 'add'; want: DesiredEndpoint }
  | { op: 'remove'; owned: OwnedEndpoint; why: string }
  | { op: 'set-backup'; owned: OwnedEndpoint; backup: boolean };

export interface Plan {
  steps: Step[];
  forget: OwnedEndpoint[];        // ours by record, but gone from the kernel (someone removed it)
  elsewhere: PmEndpoint[];        // foreign endpoints on addresses we would have managed
}

/** What an interface may carry now (effective.ts); by default the configured policy alone. */
export type PolicyOf = (iface: InterfaceState) => PathPolicy;

/**
 * The endpoints the in-kernel path manager needs for the policy. It applies them to every
 * connection alike, so a `secondary` path (needed only by some connections) is a backup endpoint.
 */
export function desiredEndpoints(interfaces: InterfaceState[], cfg: PathsConfig, policyOf?: PolicyOf): DesiredEndpoint[] {
  const out: DesiredEndpoint[] = [];
  for (const i of interfaces) {
    const policy = policyOf ? policyOf(i) : policyFor(cfg, i.name, i.kind).policy;
    if (policy === 'off' || !i.up) continue;
    for (const a of i.addresses) out.push({ address: a.address, ifindex: i.ifindex, ifname: i.name, backup: policy !== 'use' });
  }
  return out;
}

export const isImplicit = (e: PmEndpoint): boolean => e.flagNames.includes('implicit');

export function plan(desired: DesiredEndpoint[], current: PmEndpoint[], owned: Map<string, OwnedEndpoint>): Plan {
  const steps: Step[] = [];
  const forget: OwnedEndpoint[] = [];
  const elsewhere: PmEndpoint[] = [];
  const currentById = new Map(current.map((e) => [e.id, e]));
  const wanted = new Map(desired.map((d) => [d.address, d]));

  for (const o of owned.values()) {
    const k = currentById.get(o.id);
    if (!k || k.address !== o.address) {
      forget.push(o);
      continue;
    }
    const w = wanted.get(o.address);
    if (!w) steps.push({ op: 'remove', owned: o, why: 'address gone or policy off' });
    else if (w.ifindex !== o.ifindex) steps.push({ op: 'remove', owned: o, why: 'address moved to another interface' });
    else if (w.backup !== o.backup) steps.push({ op: 'set-backup', owned: o, backup: w.backup });
  }
  const keptOwned = new Set(
    [...owned.values()]
      .filter((o) => !forget.includes(o) && !steps.some((s) => s.op === 'remove' && s.owned === o))
      .map((o) => o.address),
  );
  for (const w of desired) {
    if (keptOwned.has(w.address)) continue;
    const foreign = current.find((e) => e.address === w.address && ![...owned.values()].some((o) => o.id === e.id));
    // An implicit endpoint is the kernel's own (made for the local address of a subflow it opened
    // towards an address the peer announced), nobody else's: adding ours over it replaces it.
    if (foreign && !isImplicit(foreign)) {
      elsewhere.push(foreign);
      continue;
    }
    steps.push({ op: 'add', want: w });
  }
  return { steps, forget, elsewhere };
}

/** The subset of the netlink API the reconciler uses (injected, so it can be driven in tests). */
export interface EndpointApi {
  listEndpoints(): PmEndpoint[];
  addEndpoint(opts: { address: string; flags: ('subflow' | 'backup')[]; ifindex: number }): number;
  removeEndpoint(sel: { id: number; address: string }): void;
  setEndpointFlags(sel: { id: number; address: string }, flags: ('subflow' | 'backup')[]): void;
  getLimits(): PmLimits;
  setLimits(l: Partial<PmLimits>): PmLimits;
}

export interface ReconcileReport {
  added: OwnedEndpoint[];
  removed: OwnedEndpoint[];
  changed: OwnedEndpoint[];
  elsewhere: PmEndpoint[];
  limits: PmLimits | null;
  error: { code: string; message: string } | null;
}

const flagsFor = (backup: boolean): ('subflow' | 'backup')[] => (backup ? ['subflow', 'backup'] : ['subflow']);

export class Reconciler {
  readonly owned = new Map<string, OwnedEndpoint>();
  private originalLimits: PmLimits | null = null;
  private raisedTo: PmLimits | null = null;

  /**
   * `stateFile` remembers what we created, so a crash does not leave endpoints nobody removes.
   * `guard`: a guardian process watches the record (only for the real kernel: a guardian acting on
   * a record written against a stand-in API would change the real host's endpoints and limits).
   */
  constructor(private readonly api: EndpointApi, private readonly stateFile: string | null, private readonly opts: { guard?: boolean } = {}) {
    this.adoptLeftovers();
  }

  /** `limits: false`: leave the kernel path manager's limits alone (Braid's own path manager has none). */
  apply(interfaces: InterfaceState[], cfg: PathsConfig, policyOf?: PolicyOf, opts: { limits?: boolean } = {}): ReconcileReport {
    const report: ReconcileReport = { added: [], removed: [], changed: [], elsewhere: [], limits: null, error: null };
    try {
      const p = plan(desiredEndpoints(interfaces, cfg, policyOf), this.api.listEndpoints(), this.owned);
      report.elsewhere = p.elsewhere;
      for (const o of p.forget) this.owned.delete(o.address);
      // One step the kernel refuses (an address that vanished meanwhile, a full endpoint table) must
      // not hold back the others, now or at every later reconcile: the first error is reported and
      // the rest still run. Without the privilege every step fails alike, so that stops at once.
      const attempt = (fn: () => void): void => {
        try {
          fn();
        } catch (err) {
          if (errorCode(err) === 'EPERM') throw err;
          report.error ??= { code: errorCode(err), message: errorMessage(err) };
        }
      };
      for (const s of p.steps) {
        if (s.op === 'remove') {
          attempt(() => {
            this.api.removeEndpoint({ id: s.owned.id, address: s.owned.address });
            this.owned.delete(s.owned.address);
            report.removed.push(s.owned);
            this.save();
          });
        } else if (s.op === 'set-backup') {
          attempt(() => {
            this.api.setEndpointFlags({ id: s.owned.id, address: s.owned.address }, flagsFor(s.backup));
            s.owned.backup = s.backup;
            report.changed.push(s.owned);
            this.save();
          });
        }
      }
      // Adds come after removals, so an address that moved interfaces is re-added on its new one.
      for (const s of p.steps) {
        if (s.op !== 'add') continue;
        attempt(() => {
          // The guardian watches before the first change: a crash right after the add is covered.
          this.guard();
          const id = this.api.addEndpoint({ address: s.want.address, flags: flagsFor(s.want.backup), ifindex: s.want.ifindex });
          const o: OwnedEndpoint = { id, address: s.want.address, ifindex: s.want.ifindex, ifname: s.want.ifname, backup: s.want.backup };
          this.owned.set(o.address, o);
          report.added.push(o);
          this.save();
        });
      }
      report.limits = opts.limits === false ? null : this.ensureLimits(cfg);
    } catch (err) {
      report.error = { code: errorCode(err), message: errorMessage(err) };
    } finally {
      this.save();
    }
    return report;
  }

  /** Removes every endpoint we created and puts back limits we raised. */
  cleanup(): ReconcileReport {
    const report: ReconcileReport = { added: [], removed: [], changed: [], elsewhere: [], limits: null, error: null };
    try {
      const current = this.api.listEndpoints();
      for (const o of [...this.owned.values()]) {
        if (current.some((e) => e.id === o.id && e.address === o.address)) {
          this.api.removeEndpoint({ id: o.id, address: o.address });
          report.removed.push(o);
        }
        this.owned.delete(o.address);
      }
      if (this.originalLimits && this.raisedTo) {
        const now = this.api.getLimits();
        // Only undo our own change: if someone set limits since, theirs stand.
        if (now.subflows === this.raisedTo.subflows && now.addAddrAccepted === this.raisedTo.addAddrAccepted) {
          report.limits = this.api.setLimits(this.originalLimits);
        }
        // Settled either way; a stale record would make the next run "restore" limits it never set.
        this.originalLimits = null;
        this.raisedTo = null;
      }
    } catch (err) {
      report.error = { code: errorCode(err), message: errorMessage(err) };
    } finally {
      this.save();
    }
    return report;
  }

  private ensureLimits(cfg: PathsConfig): PmLimits {
    const current = this.api.getLimits();
    const subflowEndpoints = this.api.listEndpoints().filter((e) => e.flagNames.includes('subflow')).length;
    const need = Math.min(cfg.maxSubflows, 8, Math.max(subflowEndpoints, 1));
    // add_addr_accepted lets a relay with several addresses announce them; as many as subflows.
    if (current.subflows >= need && current.addAddrAccepted >= need) return current;
    if (!this.originalLimits) this.originalLimits = current;
    const want = { subflows: Math.max(current.subflows, need), addAddrAccepted: Math.max(current.addAddrAccepted, need) };
    // Recorded before the change, so that a crash in between still puts the old limits back.
    this.raisedTo = want;
    this.save();
    this.raisedTo = this.api.setLimits(want);
    this.save();
    return this.raisedTo;
  }

  /**
   * Ids of the endpoints Braid owns here: this reconciler's, plus those of another live Braid
   * sharing the record (`braid paths` looking at what `braid up` manages).
   */
  braidIds(): Set<number> {
    const ids = new Set([...this.owned.values()].map((o) => o.id));
    if (this.stateFile) {
      try {
        const saved = JSON.parse(fs.readFileSync(this.stateFile, 'utf8')) as Partial<EndpointsRecord>;
        if (!saved.netns || saved.netns === currentNetns()) for (const o of saved.owned ?? []) ids.add(o.id);
      } catch {
        /* no record: nothing of another Braid's */
      }
    }
    return ids;
  }

  /** What this reconciler has changed on the system, for the record and for `braid status`. */
  get changes(): { owned: OwnedEndpoint[]; originalLimits: PmLimits | null; raisedTo: PmLimits | null } {
    return { owned: [...this.owned.values()], originalLimits: this.originalLimits, raisedTo: this.raisedTo };
  }

  private adoptLeftovers(): void {
    if (!this.stateFile || !fs.existsSync(this.stateFile)) return;
    try {
      const saved = JSON.parse(fs.readFileSync(this.stateFile, 'utf8')) as Partial<EndpointsRecord>;
      // A live owner's endpoints are its own (a `braid paths daemon` next to this process).
      if (saved.pid !== process.pid && typeof saved.pid === 'number' && saved.writtenAt && ownerAlive(saved as EndpointsRecord)) return;
      if (saved.netns && saved.netns !== currentNetns()) return;
      const current = this.api.listEndpoints();
      for (const o of saved.owned ?? []) {
        // Ours only if the kernel still has exactly that id on exactly that address.
        if (current.some((e) => e.id === o.id && e.address === o.address)) this.owned.set(o.address, o);
      }
      // Both halves are needed to put the limits back at the next shutdown: the restarted process
      // finds them already high enough and would otherwise never learn that they were ours.
      if (saved.originalLimits && saved.raisedTo) {
        this.originalLimits = saved.originalLimits;
        this.raisedTo = saved.raisedTo;
      }
    } catch {
      /* an unreadable state file only means no leftovers to adopt */
    }
  }

  /**
   * Keeps the guardian record equal to what we changed: written (guardian watching) while anything
   * is changed, removed once nothing is.
   */
  private guard(): void {
    if (this.stateFile && this.opts.guard) ensureGuardian(path.dirname(this.stateFile));
  }

  private save(): void {
    if (!this.stateFile) return;
    try {
      if (this.owned.size === 0 && !this.raisedTo) {
        if (fs.existsSync(this.stateFile)) removeRecord(this.stateFile);
        return;
      }
      this.guard();
      const rec: EndpointsRecord = { ...ownedByThisProcess(ENDPOINTS_KIND), netns: currentNetns(), ...this.changes };
      writeRecord(this.stateFile, rec);
    } catch {
      /* best effort: losing it only means a crash could leave endpoints behind until the next start */
    }
  }
}

export type { PathPolicy };

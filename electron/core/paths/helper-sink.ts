/**
 * An unprivileged Braid's per-connection wishes (a rule's paths, secondary paths needed or not),
 * sent to the privileged helper's path manager (`braid helper --paths-config`), which opens the
 * subflows. Fire and forget: a connection works without them, on the helper's interface policies.
 * When no helper answers (or it does not manage paths), it says so once and tries again a minute later.
 */
import { errorCode, errorMessage } from '../errors';
import { HelperClient } from '../privileged/client';
import type { Logger } from '../proxy/session';
import type { ConnectionSink, KnownConnection } from './routing';
import type { ConnWish } from './subflow-plan';

const RETRY_MS = 60_000;

export class HelperSink implements ConnectionSink {
  private readonly client: HelperClient;
  private pausedUntil = 0;
  private told = false;

  constructor(private readonly log: Logger, socketPath?: string) {
    this.client = new HelperClient(socketPath);
  }

  register(token: number, wish: ConnWish, known?: KnownConnection): void {
    if (!known || Date.now() < this.pausedUntil) return;
    const allowed = wish.allowed ? [...wish.allowed].map(([name, as]) => ({ name, as })) : null;
    this.client.pathsConnection({ token, localPort: known.localPort, allowed, rule: wish.rule }).catch((err) => this.failed(err));
  }

  update(token: number, change: Partial<ConnWish>): void {
    if (!change.secondary || Date.now() < this.pausedUntil) return;
    this.client.pathsSecondary({ token, state: change.secondary }).catch((err) => this.failed(err));
  }

  close(): void {
    this.client.close();
  }

  private failed(err: unknown): void {
    const code = errorCode(err);
    if (code === 'ENOHELPER' || code === 'ENOTSUP') {
      this.pausedUntil = Date.now() + RETRY_MS;
      const why = code === 'ENOTSUP' ? errorMessage(err) : 'no braid helper with --paths-config runs here (see build/linux/braid-helper.service), and this process lacks CAP_NET_ADMIN';
      if (!this.told) this.log.info(`paths: rules and secondary paths choose only the first subflow: ${why}`);
      this.told = true;
      return;
    }
    this.log.debug(`paths: the braid helper refused a connection's paths: ${errorMessage(err)}`);
  }
}

/**
 * Braid's nftables table as a kind of guarded state (see ../guardian/restorers.ts): removed when the
 * Braid that put it there is gone, so a machine is never left with its TCP redirected to a dead port.
 */
import path from 'node:path';
import type { GuardedRecord, Restorer } from '../guardian/restorers';
import { guardianDir, removeRecord, type OwnerFields } from '../guardian/record';
import { currentNetns } from '../paths/reconcile';
import { removeTable } from './nft';
import { TABLE_FAMILY, TABLE_NAME } from './ruleset';

export const NFT_KIND = 'nft-table';

export interface NftRecord extends OwnerFields {
  /** The network namespace the table lives in ('net:[inode]'): only a process there can remove it. */
  netns: string | null;
  table: string;
  /** What it does, for `braid status` ("redirects all TCP of uid 1000 to 127.0.0.1:41235"). */
  summary: string;
}

export function nftRecordFile(stateDir: string): string {
  const ns = /\[(\d+)\]/.exec(currentNetns() ?? '')?.[1] ?? 'unknown';
  return path.join(guardianDir(stateDir), `${NFT_KIND}-net${ns}.json`);
}

export const nftRestorer: Restorer = {
  describe: (rec: GuardedRecord) => [`nftables table ${(rec as unknown as NftRecord).table}: ${(rec as unknown as NftRecord).summary}`],
  applicable: (rec: GuardedRecord) => (rec as unknown as NftRecord).netns === currentNetns(),
  async restore(file: string): Promise<string> {
    const existed = await removeTable();
    removeRecord(file);
    return existed ? `nftables table ${TABLE_FAMILY} ${TABLE_NAME} removed (TCP no longer redirected)` : `nftables table ${TABLE_FAMILY} ${TABLE_NAME} was already gone`;
  },
};

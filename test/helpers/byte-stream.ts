/**
 * Deterministic pseudo-random content for download tests: the AES-128-CTR keystream of a key
 * derived from a seed. It does not repeat (a reordering or duplicated chunk changes the hash, unlike
 * a repeated pattern), it is generated natively at several GB/s (so the server is not the bottleneck
 * of a Gbit/s benchmark), and a client can recompute the SHA-256 from (N, seed) alone.
 *
 * No dependency on the native addon, so tests can compute expectations without loading it.
 */
import crypto from 'node:crypto';

export const DEFAULT_SEED = 'braid';
const CHUNK = 256 * 1024;
const ZEROS = Buffer.alloc(CHUNK);

export function keystream(seed: string): crypto.Cipher {
  const key = crypto.createHash('sha256').update(`braid-bytes:${seed}`).digest().subarray(0, 16);
  return crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
}

/** The content in chunks of at most 256 KiB; `total` bytes overall. */
export function* byteChunks(total: number, seed: string = DEFAULT_SEED): Generator<Buffer> {
  const cipher = keystream(seed);
  let left = total;
  while (left > 0) {
    const n = Math.min(left, CHUNK);
    yield cipher.update(n === CHUNK ? ZEROS : ZEROS.subarray(0, n));
    left -= n;
  }
}

export function expectedSha256(total: number, seed: string = DEFAULT_SEED): string {
  const h = crypto.createHash('sha256');
  for (const c of byteChunks(total, seed)) h.update(c);
  return h.digest('hex');
}

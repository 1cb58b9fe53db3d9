// The pause watch on counts the addon keeps (AckNudger.follow, used when the addon writes the
// download itself: proxy/open-tunnel.ts): bulk bytes then a pause bring one record, and a transfer
// that goes on after it is watched on without being woken again, so its next pause brings another.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AckNudger, BULK_BYTES, QUIET_TICK_MS } from '../electron/core/proxy/ack-nudge';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('followed counts: a pause after bulk bytes brings a record, and so does the next pause, with one wake', async () => {
  let total = 0;
  let nudges = 0;
  const n = new AckNudger({ nudge: () => (nudges++, true), holding: () => false });
  n.follow(() => total);
  n.wake();
  for (let burst = 0; burst < 2; burst++) {
    // 3 MiB over ~60 ms (growing faster than the watch ticks), then quiet for 100 ms.
    for (let i = 0; i < 12; i++) {
      total += BULK_BYTES / 4;
      await sleep(QUIET_TICK_MS / 2);
    }
    await sleep(100);
    assert.equal(nudges, burst + 1, `a record after pause ${burst + 1}`);
  }
  // Quiet with no bulk before it: nothing more.
  await sleep(100);
  assert.equal(nudges, 2);
  n.stop();
});

test('followed counts: no record while the reader holds back, nor after a slow trickle', async () => {
  let total = 0;
  let nudges = 0;
  let holding = true;
  const n = new AckNudger({ nudge: () => (nudges++, true), holding: () => holding });
  n.follow(() => total);
  n.wake();
  for (let i = 0; i < 12; i++) {
    total += BULK_BYTES / 4;
    await sleep(QUIET_TICK_MS / 2);
  }
  await sleep(100);
  assert.equal(nudges, 0, 'held back by our own reader: that quiet is ours');
  holding = false;
  for (let i = 0; i < 20; i++) {
    total += 1000;
    await sleep(QUIET_TICK_MS / 2);
  }
  await sleep(100);
  assert.equal(nudges, 0, 'a trickle is not bulk');
  n.stop();
});

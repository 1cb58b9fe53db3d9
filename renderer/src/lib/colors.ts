/**
 * A stable colour per path: the same interface keeps its colour in the chart, its card and the
 * connections table, and across reloads. The slot comes from a hash of the path name; on a
 * collision with a path already seen this session the next free slot is taken, and the
 * assignment is then kept for the session, so a colour never changes under the user's eyes.
 */

// Tableau 10: distinguishable, legible on light and dark backgrounds.
export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

const assigned = new Map<string, number>();
const MAX_REMEMBERED = 256;

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function pathColor(path: string): string {
  let slot = assigned.get(path);
  if (slot === undefined) {
    if (assigned.size >= MAX_REMEMBERED) assigned.clear();
    const taken = new Set(assigned.values());
    const start = fnv1a(path) % PALETTE.length;
    slot = start;
    for (let i = 0; i < PALETTE.length; i++) {
      const s = (start + i) % PALETTE.length;
      if (!taken.has(s)) {
        slot = s;
        break;
      }
    }
    assigned.set(path, slot);
  }
  return PALETTE[slot]!;
}

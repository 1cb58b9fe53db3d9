/**
 * At most one call per `ms`: the first call runs at once, calls during the wait collapse into one
 * trailing call. For the tray menu, which stats ticks and path events would otherwise rebuild
 * many times a second.
 */
export interface Throttled {
  (): void;
  cancel(): void;
}

export function throttle(fn: () => void, ms: number, clock: { now(): number } = Date): Throttled {
  let last = -Infinity;
  let timer: NodeJS.Timeout | null = null;
  const run = (): void => {
    timer = null;
    last = clock.now();
    fn();
  };
  const t = (): void => {
    if (timer) return;
    const wait = last + ms - clock.now();
    if (wait <= 0) run();
    else {
      timer = setTimeout(run, wait);
      timer.unref?.();
    }
  };
  t.cancel = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  return t;
}

/**
 * `node --require low-fd-preload.js …`: puts the soft open-file limit back to 1024 before the
 * program runs, as a host that embeds Node without raising it (Electron may) leaves it, so that a
 * test sees whether Braid raises it itself. Plain Node raises it to the hard limit at start-up.
 */
import { nofileLimit } from '../../electron/core/native/rlimit';

nofileLimit(Math.min(1024, nofileLimit().hard));

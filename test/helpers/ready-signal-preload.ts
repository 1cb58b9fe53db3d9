/**
 * `node --require ready-signal-preload.js …` (signal-ready.test.ts): when a Braid command writes its
 * ready line to stdout, writes first whether SIGTERM and SIGINT have handlers at that moment. A
 * test that stops a command as soon as it reads that line would otherwise race its handlers: a
 * SIGTERM with none yet ends the process at once, without putting anything back.
 */
const READY = /^braid: (?:proxy listening|relay listening|helper listening|managing MPTCP endpoints)/m;
const write = process.stdout.write.bind(process.stdout) as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean;

process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
  if (READY.test(String(chunk))) {
    write(`ready-check SIGTERM=${process.listenerCount('SIGTERM')} SIGINT=${process.listenerCount('SIGINT')}\n`);
  }
  return write(chunk, ...rest);
}) as typeof process.stdout.write;

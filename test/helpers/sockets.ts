/** Small socket helpers the tests share. */
import type net from 'node:net';
import { socketFd } from '../../electron/core/socket-fd';

/** The socket's fd; throws when it has none (the test needs one). */
export function fdOf(s: net.Socket): number {
  const fd = socketFd(s);
  if (fd === null) throw new Error('socket has no fd');
  return fd;
}

/** Everything the socket sends until its EOF. */
export function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

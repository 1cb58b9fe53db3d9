/** Small socket helpers the tests share. */
import net from 'node:net';
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

/** Two connected loopback TCP sockets (half-open allowed on both). */
export async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const b = await accepted;
  await new Promise<void>((r) => (a.connecting ? a.once('connect', () => r()) : r()));
  server.close();
  return [a, b];
}

// TCP echo (RFC 862 style): every byte received is sent back on the same connection.
import { createServer, type Server } from 'node:net';

export function startTcpEcho(port: number): Promise<Server> {
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy()); // a reset peer is normal for an echo server
    socket.pipe(socket);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve(server));
  });
}

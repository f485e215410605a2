// TCP echo (RFC 862 style): every byte received is sent back on the same connection.
import { createServer, type Server, type Socket } from 'node:net';
import { listenBothFamilies } from './listen.ts';

export function startTcpEcho(port: number): Promise<Server> {
  const echo = (socket: Socket): void => {
    socket.on('error', () => socket.destroy()); // a reset peer is normal for an echo server
    socket.pipe(socket);
  };
  return listenBothFamilies(createServer(echo), () => createServer(echo), port);
}

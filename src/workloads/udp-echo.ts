// UDP echo (RFC 862 style): each datagram goes back unchanged to the address and port it
// came from, so a reply only arrives if the return path (and any NAT) is right.
import { createSocket, type Socket } from 'node:dgram';

export function startUdpEcho(port: number): Promise<Socket> {
  const socket = createSocket('udp4');
  socket.on('message', (message, peer) => {
    // Source port 0 means "no reply expected" (RFC 768), and Node refuses to send to
    // it (ERR_SOCKET_BAD_PORT, thrown synchronously): one such datagram must not end
    // the workload.
    if (peer.port === 0) return;
    socket.send(message, peer.port, peer.address, (err) => {
      if (err !== null) console.error(`udp-echo: reply to ${peer.address}:${peer.port}: ${err.message}`);
    });
  });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, '0.0.0.0', () => {
      socket.removeListener('error', reject);
      socket.on('error', (err) => console.error(`udp-echo: ${err.message}`));
      resolve(socket);
    });
  });
}

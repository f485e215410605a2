// UDP echo (RFC 862 style): each datagram goes back unchanged to the address and port it
// came from, so a reply only arrives if the return path (and any NAT) is right. IPv4 on
// 0.0.0.0; where the namespace has IPv6 (a dual-stack pod), an IPv6-only socket on [::]
// beside it, closed with the IPv4 one.
import { createSocket, type Socket } from 'node:dgram';

function echoOn(socket: Socket): void {
  socket.on('message', (message, peer) => {
    // Source port 0 means "no reply expected" (RFC 768), and Node refuses to send to
    // it (ERR_SOCKET_BAD_PORT, thrown synchronously): one such datagram must not end
    // the workload.
    if (peer.port === 0) return;
    socket.send(message, peer.port, peer.address, (err) => {
      if (err !== null) console.error(`udp-echo: reply to ${peer.address}:${peer.port}: ${err.message}`);
    });
  });
}

export function startUdpEcho(port: number): Promise<Socket> {
  const socket = createSocket('udp4');
  echoOn(socket);
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, '0.0.0.0', () => {
      socket.removeListener('error', reject);
      socket.on('error', (err) => console.error(`udp-echo: ${err.message}`));
      const v6 = createSocket({ type: 'udp6', ipv6Only: true });
      echoOn(v6);
      v6.once('error', () => resolve(socket)); // no IPv6 here: the IPv4 echo alone
      v6.bind(port, '::', () => {
        v6.on('error', (err) => console.error(`udp-echo: ${err.message}`));
        socket.once('close', () => v6.close());
        resolve(socket);
      });
    });
  });
}

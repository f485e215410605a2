// Sends one raw datagram (hex) to HOST PORT and prints the answer as hex, or "timeout"
// after 2 s: for the server's tests of bad input, which dig will not send.
import { createSocket } from 'node:dgram';

const [host, port, hex] = process.argv.slice(2) as [string, string, string];
const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
const timer = setTimeout(() => { console.log('timeout'); socket.close(); }, 2000);
socket.on('message', (data) => {
  clearTimeout(timer);
  console.log(data.toString('hex'));
  socket.close();
});
socket.send(Buffer.from(hex, 'hex'), Number(port), host);

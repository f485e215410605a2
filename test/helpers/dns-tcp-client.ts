// DNS over TCP the way dig will not do it: HOST PORT HEX... sends every query (hex) with
// its 2-byte length on one connection, all in one write cut in the middle of the second
// query's length prefix and again inside its message (the server must reassemble frames
// across segments), then prints each answer as hex, one line each, in arrival order, or
// "timeout" after 5 s.
import { connect } from 'node:net';

const [host, port, ...hexes] = process.argv.slice(2) as [string, string, ...string[]];
const frames = hexes.map((h) => {
  const msg = Buffer.from(h, 'hex');
  const frame = Buffer.alloc(2 + msg.length);
  frame.writeUInt16BE(msg.length, 0);
  msg.copy(frame, 2);
  return frame;
});
const stream = Buffer.concat(frames);
const cuts = [frames[0]!.length + 1, frames[0]!.length + 7].filter((c) => c < stream.length);
const socket = connect({ host, port: Number(port) });
socket.setNoDelay(true);
const timer = setTimeout(() => { console.log('timeout'); socket.destroy(); }, 5000);
let pending = Buffer.alloc(0);
let answers = 0;
socket.on('connect', () => {
  let from = 0;
  const pieces = [...cuts, stream.length].map((to) => { const p = stream.subarray(from, to); from = to; return p; });
  // One piece per tick, so they leave as separate segments.
  const next = (): void => {
    const p = pieces.shift();
    if (p === undefined) return;
    socket.write(p);
    setTimeout(next, 20);
  };
  next();
});
socket.on('data', (data: Buffer) => {
  pending = Buffer.concat([pending, data]);
  while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
    const len = pending.readUInt16BE(0);
    console.log(pending.subarray(2, 2 + len).toString('hex'));
    pending = pending.subarray(2 + len);
    if (++answers === frames.length) { clearTimeout(timer); socket.end(); }
  }
});
socket.on('error', (err) => { console.log(`error ${err.message}`); clearTimeout(timer); });

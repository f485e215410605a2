// An HTTP/2 client for the Ingress h2 tests, for what curl and h2load cannot do: run
// inside the test's namespace (`ip netns exec NS node h2-client.ts PORT OP`), it
// prints one JSON line with what happened.
//   big-head BYTES  a request with a header of BYTES bytes, then a plain one on the same
//                   connection: {"big": status or "reset CODE", "after": status}
//   cancel PATH MS  a request cancelled (RST_STREAM CANCEL) after MS ms: {"cancelled": true}
//   garbage         the connection preface, then a frame of an unknown length layout
//                   (a SETTINGS frame whose length is not a multiple of 6):
//                   {"goaway": true|false, "closed": true}
import { connect, constants } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';

const [port, op, a, b] = process.argv.slice(2);
const origin = `https://127.0.0.1:${port}`;
const print = (o: unknown): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };

function request(session: ReturnType<typeof connect>, path: string, headers: Record<string, string> = {}): Promise<string | number> {
  return new Promise((resolve) => {
    const req = session.request({ ':path': path, ...headers });
    let status = 0;
    req.on('response', (h) => { status = Number(h[':status']); });
    req.on('data', () => undefined);
    req.on('end', () => resolve(status));
    req.on('error', () => resolve(`reset ${req.rstCode}`));
    req.on('close', () => { if (req.rstCode !== constants.NGHTTP2_NO_ERROR) resolve(`reset ${req.rstCode}`); });
  });
}

if (op === 'big-head') {
  const session = connect(origin, { rejectUnauthorized: false, maxSendHeaderBlockLength: 1 << 20 });
  session.on('error', () => undefined);
  const big = await request(session, '/big', { 'x-big': 'v'.repeat(Number(a)) });
  const after = await request(session, '/after');
  session.close();
  print({ big, after });
} else if (op === 'cancel') {
  const session = connect(origin, { rejectUnauthorized: false });
  session.on('error', () => undefined);
  const req = session.request({ ':path': a! });
  req.on('error', () => undefined);
  req.on('data', () => undefined);
  await new Promise((r) => setTimeout(r, Number(b)));
  req.close(constants.NGHTTP2_CANCEL);
  await new Promise((r) => setTimeout(r, 100));
  session.close();
  print({ cancelled: true });
} else if (op === 'garbage') {
  const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ALPNProtocols: ['h2'], rejectUnauthorized: false });
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  socket.on('error', () => undefined);
  socket.on('secureConnect', () => {
    // The preface, then SETTINGS with a length of 5 (RFC 9113 6.5: a FRAME_SIZE_ERROR).
    socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5])]));
  });
  const timer = setTimeout(() => { print({ goaway: false, closed: false }); process.exit(0); }, 5_000);
  socket.on('close', () => {
    clearTimeout(timer);
    // Frames from the server: type 7 is GOAWAY (9-byte frame headers, walked in order).
    const all = Buffer.concat(got);
    let goaway = false;
    for (let i = 0; i + 9 <= all.length; i += 9 + all.readUIntBE(i, 3)) if (all[i + 3] === 7) goaway = true;
    print({ goaway, closed: true });
  });
} else {
  throw new Error(`h2-client: unknown op ${op}`);
}

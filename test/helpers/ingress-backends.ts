// Backends for the Ingress tests and benchmark: one process serving several endpoints
// (NAME=IP:PORT arguments), each a tiny node http server inside the caller's network
// namespace. Every answer is JSON naming the endpoint and echoing what arrived:
//   GET /anything          -> 200 {"server","method","url","headers","bodyLength"}
//   GET /slow?ms=N         -> the same after N ms
//   GET /status/NNN        -> status NNN
//   GET /fixed             -> 200 "ok\n" (the benchmark's small fixed body)
//   GET /chunks?n=N&size=S -> N chunks of S bytes ('a'..'z' by chunk), chunked, with
//                           an x-chunks trailer (no Content-Length: the proxy must frame it)
//   GET /dribble           -> 200 "hello done" written raw in four pieces 30 ms apart,
//                           split inside the status line, a field name and the body
//                           (Connection: close)
//   /reset-on/NAME         -> endpoint NAME closes the connection without an answer
// and an HTTP/1.1 Upgrade to "websocket" is answered with a hand-rolled RFC 6455 echo:
// 101 with Sec-WebSocket-Accept, then every text or binary frame comes back unmasked,
// prefixed with "NAME: " for text. NAME=IP:PORT/tls serves the same over HTTPS;
// NAME=IP:PORT/h2c is HTTP/2 without TLS answering as a gRPC server does (content-type
// application/grpc, the JSON body, grpc-status in trailers). Prints "ready" when every
// endpoint listens.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import { generateDefaultCertificate } from '../../src/ingress/tls.ts';
import type { Duplex } from 'node:stream';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** An h2c server (HTTP/2 without TLS, prior knowledge) answering as gRPC does: status in trailers. */
function serveH2c(name: string, ip: string, port: number): Promise<void> {
  const server = createHttp2Server();
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-backend': name }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': `${name}-ok` }));
      stream.end(JSON.stringify({ server: name, method: headers[':method'], url: headers[':path'], headers, bodyLength: Buffer.concat(chunks).length }));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, ip, () => resolve());
  });
}

function serve(name: string, ip: string, port: number, tls: { cert: string; key: string } | null): Promise<void> {
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === `/reset-on/${name}`) {
        req.socket.destroy();
        return;
      }
      if (url.pathname === '/dribble') {
        const socket = req.socket;
        const parts = ['HTTP/1.1 200 O', `K\r\nX-Backend: ${name}\r\nX-Dri`, 'bble: yes\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello', ' done'];
        let i = 0;
        const next = (): void => {
          socket.write(parts[i++]!);
          if (i < parts.length) setTimeout(next, 30);
          else socket.end();
        };
        next();
        return;
      }
      if (url.pathname === '/fixed') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
        res.end('ok\n');
        return;
      }
      if (url.pathname === '/chunks') {
        const n = Number(url.searchParams.get('n') ?? 4), size = Number(url.searchParams.get('size') ?? 1024);
        res.writeHead(200, { 'content-type': 'application/octet-stream', trailer: 'x-chunks', 'x-backend': name });
        let i = 0;
        const more = (): void => {
          while (i < n) {
            const ok = res.write(Buffer.alloc(size, 97 + (i % 26)));
            i++;
            if (!ok) { res.once('drain', more); return; }
          }
          res.addTrailers({ 'x-chunks': String(n) });
          res.end();
        };
        more();
        return;
      }
      const status = url.pathname.startsWith('/status/') ? Number(url.pathname.slice(8)) : 200;
      const body = JSON.stringify({ server: name, method: req.method, url: req.url, headers: req.headers, bodyLength: Buffer.concat(chunks).length });
      const answer = (): void => {
        res.writeHead(status, { 'content-type': 'application/json', 'set-cookie': `backend=${name}` });
        res.end(body);
      };
      const ms = Number(url.searchParams.get('ms') ?? 0);
      if (url.pathname.startsWith('/slow')) setTimeout(answer, ms);
      else answer();
    });
  };
  const server = tls === null ? createServer({ keepAliveTimeout: 65_000 }, handler) : createHttpsServer({ keepAliveTimeout: 65_000, ...tls }, handler);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => websocketEcho(name, req, socket));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, ip, () => resolve());
  });
}

function websocketEcho(name: string, req: IncomingMessage, socket: Duplex): void {
  const key = req.headers['sec-websocket-key'];
  if (req.headers.upgrade?.toLowerCase() !== 'websocket' || typeof key !== 'string') {
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\nx-backend: ${name}\r\nx-seen-forwarded-for: ${req.headers['x-forwarded-for'] ?? ''}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const opcode = buf[0]! & 0x0f;
      let len = buf[1]! & 0x7f, at = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); at = 4; } else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); at = 10; }
      const masked = (buf[1]! & 0x80) !== 0;
      const need = at + (masked ? 4 : 0) + len;
      if (buf.length < need) return;
      const payload = Buffer.from(buf.subarray(at + (masked ? 4 : 0), need));
      if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= buf[at + (i & 3)]!;
      buf = buf.subarray(need);
      if (opcode === 8) { socket.end(frame(8, payload)); return; }
      if (opcode === 9) { socket.write(frame(10, payload)); continue; }
      if (opcode === 1) socket.write(frame(1, Buffer.concat([Buffer.from(`${name}: `), payload])));
      else if (opcode === 2) socket.write(frame(2, payload));
    }
  });
  socket.on('error', () => undefined);
}

function frame(opcode: number, payload: Buffer): Buffer {
  const head = payload.length < 126 ? Buffer.from([0x80 | opcode, payload.length])
    : payload.length < 65536 ? Buffer.from([0x80 | opcode, 126, payload.length >> 8, payload.length & 0xff])
    : (() => { const h = Buffer.alloc(10); h[0] = 0x80 | opcode; h[1] = 127; h.writeBigUInt64BE(BigInt(payload.length), 2); return h; })();
  return Buffer.concat([head, payload]);
}

// NAME=IP:PORT (HTTP/1.1), NAME=IP:PORT/h2c (gRPC-like h2c), NAME=IP:PORT/tls (HTTPS, a throw-away certificate).
let selfSigned: { cert: string; key: string } | null = null;
await Promise.all(process.argv.slice(2).map((arg) => {
  const [name, spec] = arg.split('=') as [string, string];
  const [addr, kind] = spec.split('/') as [string, string | undefined];
  const colon = addr.lastIndexOf(':');
  const ip = addr.slice(0, colon), port = Number(addr.slice(colon + 1));
  if (kind === 'h2c') return serveH2c(name, ip, port);
  if (kind === 'tls') {
    if (selfSigned === null) {
      const c = generateDefaultCertificate(['backend.local']);
      selfSigned = { cert: c.certPem, key: c.keyPem };
    }
    return serve(name, ip, port, selfSigned);
  }
  return serve(name, ip, port, null);
}));
process.stdout.write('ready\n');

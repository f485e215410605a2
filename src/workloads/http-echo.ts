// HTTP echo: answers every request with JSON describing it as this pod saw it. `client`
// is the peer address exactly as the accepted socket reports it, so a test can tell
// whether anything on the path rewrote the source (SNAT) or not.
import { createServer, type RequestListener, type Server } from 'node:http';
import type { PodIdentity } from './identity.ts';
import { listenBothFamilies } from './listen.ts';

export interface EchoReply {
  pod: string;
  namespace: string;
  node: string;
  /** "ip:port" of the peer as this pod's socket sees it. */
  client: string;
  /** "ip:port" the request arrived at (after any DNAT on the way). */
  server: string;
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  bodyLength: number;
}

export function startHttpEcho(identity: PodIdentity, port: number): Promise<Server> {
  const handler: RequestListener = (req, res) => {
    let bodyLength = 0;
    req.on('data', (chunk: Buffer) => { bodyLength += chunk.length; });
    req.on('end', () => {
      const socket = req.socket;
      const reply: EchoReply = {
        pod: identity.pod,
        namespace: identity.namespace,
        node: identity.node,
        client: `${socket.remoteAddress}:${socket.remotePort}`,
        server: `${socket.localAddress}:${socket.localPort}`,
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        bodyLength,
      };
      const body = `${JSON.stringify(reply)}\n`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };
  const server = createServer(handler);
  // 0.0.0.0, not "::": on a dual-stack socket IPv4 peers appear as ::ffff:a.b.c.d. IPv6
  // peers (a dual-stack pod's) reach a second, IPv6-only listener beside it.
  return listenBothFamilies(server, () => createServer(handler), port);
}

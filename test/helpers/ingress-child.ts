// An IngressProxy in a process of its own, started by the Ingress tests and benchmark
// inside a network namespace they created (`ip netns exec NS node ingress-child.ts ...`),
// as `tapir ingress` runs it in a pod. Driven over stdin/stdout, one JSON object a line:
//   -> {"op":"config","config":{...IngressConfig, certificates: [[secret, Certificate], ...]}}
//   <- {"op":"config","generation":N}
//   -> {"op":"metrics"}   <- {"op":"metrics","text":"..."}
//   -> {"op":"memory"}    <- {"op":"memory", ...process.memoryUsage()}
// It writes {"op":"ready","http":PORT,"https":PORT} once listening.
//   node ingress-child.ts HTTP_PORT HTTPS_PORT ADDRESS CERT_FILE KEY_FILE
// (ADDRESS "default": none given, the proxy's default of both families.)
// TAPIR_INGRESS_NODE_HTTP=1 serves plain HTTP through node:http instead of the proxy's
// HTTP/1.1 engine (its fallback where llhttp cannot be reached); TAPIR_INGRESS_NODE_H2=1
// serves h2 through node:http2 instead of the addon's nghttp2 session (its fallback
// where the addon has none); TAPIR_INGRESS_NODE_NET=1 puts the HTTP/1.1 engine's plain
// sockets on node:net instead of the addon's. "ready" says which serves h2 ("h2":
// "native" or "node") and what the plain HTTP/1.1 sockets are ("h1": "native", "net" or
// "node:http").
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Certificate, IngressConfig } from '../../src/ingress/model.ts';
import { IngressProxy } from '../../src/ingress/proxy.ts';

const [httpPort, httpsPort, address, certFile, keyFile] = process.argv.slice(2);
const proxy = new IngressProxy({
  httpPort: Number(httpPort), httpsPort: Number(httpsPort), ...(address === 'default' ? {} : { address: address! }),
  log: (message) => process.stderr.write(`${message}\n`),
  defaultCertificate: { certPem: readFileSync(certFile!, 'utf8'), keyPem: readFileSync(keyFile!, 'utf8') },
  nodeHttp: process.env.TAPIR_INGRESS_NODE_HTTP === '1',
  nodeH2: process.env.TAPIR_INGRESS_NODE_H2 === '1',
  nodeNet: process.env.TAPIR_INGRESS_NODE_NET === '1',
});
await proxy.start();
const send = (o: unknown): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };
send({ op: 'ready', ...proxy.ports, h2: proxy.h2Engine, h1: proxy.h1Wire });

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === '') continue;
  const msg = JSON.parse(line) as { op: string; config?: Omit<IngressConfig, 'certificates'> & { certificates: [string, Certificate][] } };
  if (msg.op === 'config') {
    proxy.setConfig({ ...msg.config!, certificates: new Map(msg.config!.certificates) });
    send({ op: 'config', generation: proxy.generation });
  } else if (msg.op === 'memory') {
    // With --expose-gc, after a full collection: what is still reachable.
    (globalThis as { gc?: () => void }).gc?.();
    send({ op: 'memory', ...process.memoryUsage() });
  } else if (msg.op === 'metrics') {
    send({ op: 'metrics', text: await proxy.metrics.metrics() });
  }
}
await proxy.stop();
process.exit(0);

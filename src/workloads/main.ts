// Entry of the built-in pod workloads, run by the lab inside a pod's namespace:
//   node src/workloads/main.ts --pod P --namespace NS --node N
//        [--http PORT] [--tcp PORT] [--udp PORT] [--ready FILE]
// Starts the requested echo servers, then writes FILE (its PID) so the lab knows it
// listens. Exits on SIGTERM/SIGINT.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startHttpEcho } from './http-echo.ts';
import { startTcpEcho } from './tcp-echo.ts';
import { startUdpEcho } from './udp-echo.ts';

function port(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error(`${flag}: not a port: ${text}`);
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      pod: { type: 'string', default: 'unknown' },
      namespace: { type: 'string', default: 'default' },
      node: { type: 'string', default: 'unknown' },
      http: { type: 'string' },
      tcp: { type: 'string' },
      udp: { type: 'string' },
      ready: { type: 'string' },
    },
    strict: true,
  });
  const identity = { pod: values.pod, namespace: values.namespace, node: values.node };
  const closers: (() => void)[] = [];
  const started: string[] = [];
  const httpPort = port(values.http, '--http');
  const tcpPort = port(values.tcp, '--tcp');
  const udpPort = port(values.udp, '--udp');
  if (httpPort !== undefined) {
    const server = await startHttpEcho(identity, httpPort);
    closers.push(() => server.close());
    started.push(`http-echo :${httpPort}`);
  }
  if (tcpPort !== undefined) {
    const server = await startTcpEcho(tcpPort);
    closers.push(() => server.close());
    started.push(`tcp-echo :${tcpPort}`);
  }
  if (udpPort !== undefined) {
    const socket = await startUdpEcho(udpPort);
    closers.push(() => socket.close());
    started.push(`udp-echo :${udpPort}/udp`);
  }
  const stop = (signal: string): void => {
    console.log(`${new Date().toISOString()} ${signal}: stopping`);
    for (const close of closers) close();
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  console.log(`${new Date().toISOString()} pod ${identity.namespace}/${identity.pod} on ${identity.node}: ${started.join(', ') || 'nothing to serve'} (pid ${process.pid})`);
  if (values.ready !== undefined) writeFileSync(values.ready, `${process.pid}\n`);
}

main().catch((err: unknown) => {
  console.error(`workload: ${(err as Error).message}`);
  process.exit(1);
});

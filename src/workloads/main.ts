// Entry of the built-in pod workloads, run by the lab inside a pod's namespace:
//   node src/workloads/main.ts --pod P --namespace NS --node N
//        [--http PORT]... [--tcp PORT]... [--udp PORT]... [--command JSON]... [--ready FILE]
// Starts the requested echo servers (each flag may repeat: a Pod manifest gets the HTTP
// echo on every TCP containerPort and the UDP echo on every UDP one), then the
// containers' commands (`--command '{"name":"c","argv":[...],"env":{...}}'`) as children
// in this same network namespace, then writes FILE (its PID) so the lab knows it
// listens. Exits on SIGTERM/SIGINT, passing the signal on to the commands.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startHttpEcho } from './http-echo.ts';
import { startTcpEcho } from './tcp-echo.ts';
import { startUdpEcho } from './udp-echo.ts';

interface ContainerCommand { name: string; argv: string[]; env: Record<string, string> }

function ports(texts: string[] | undefined, flag: string): number[] {
  return (texts ?? []).map((text) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error(`${flag}: not a port: ${text}`);
    return value;
  });
}

function command(text: string): ContainerCommand {
  const value = JSON.parse(text) as Partial<ContainerCommand>;
  if (typeof value.name !== 'string' || !Array.isArray(value.argv) || value.argv.length === 0 || !value.argv.every((a) => typeof a === 'string')) {
    throw new Error(`--command: needs {"name": string, "argv": [string, ...], "env": {...}}: ${text}`);
  }
  return { name: value.name, argv: value.argv, env: value.env ?? {} };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      pod: { type: 'string', default: 'unknown' },
      namespace: { type: 'string', default: 'default' },
      node: { type: 'string', default: 'unknown' },
      http: { type: 'string', multiple: true },
      tcp: { type: 'string', multiple: true },
      udp: { type: 'string', multiple: true },
      command: { type: 'string', multiple: true },
      ready: { type: 'string' },
    },
    strict: true,
  });
  const identity = { pod: values.pod, namespace: values.namespace, node: values.node };
  const closers: (() => void)[] = [];
  const started: string[] = [];
  for (const port of ports(values.http, '--http')) {
    const server = await startHttpEcho(identity, port);
    closers.push(() => server.close());
    started.push(`http-echo :${port}`);
  }
  for (const port of ports(values.tcp, '--tcp')) {
    const server = await startTcpEcho(port);
    closers.push(() => server.close());
    started.push(`tcp-echo :${port}`);
  }
  for (const port of ports(values.udp, '--udp')) {
    const socket = await startUdpEcho(port);
    closers.push(() => socket.close());
    started.push(`udp-echo :${port}/udp`);
  }
  const children: ChildProcess[] = [];
  for (const container of (values.command ?? []).map(command)) {
    const child = spawn(container.argv[0]!, container.argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...container.env } });
    child.on('error', (err) => console.error(`container ${container.name}: ${err.message}`));
    // No restart (restartPolicy Never): a pod whose command ended shows it in its log
    // and stops answering its readiness probe, which is what the lab reports.
    child.on('exit', (code, signal) => console.log(`${new Date().toISOString()} container ${container.name} exited (${signal ?? `code ${code}`})`));
    children.push(child);
    started.push(`container ${container.name}: ${container.argv.join(' ')}`);
  }
  const stop = (signal: NodeJS.Signals): void => {
    console.log(`${new Date().toISOString()} ${signal}: stopping`);
    for (const close of closers) close();
    for (const child of children) if (child.exitCode === null) child.kill(signal);
    process.exit(0);
  };
  // The pod's sandbox lives until the lab stops it, even with nothing (left) to run.
  setInterval(() => {}, 1 << 30);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  console.log(`${new Date().toISOString()} pod ${identity.namespace}/${identity.pod} on ${identity.node}: ${started.join(', ') || 'nothing to serve'} (pid ${process.pid})`);
  if (values.ready !== undefined) writeFileSync(values.ready, `${process.pid}\n`);
}

main().catch((err: unknown) => {
  console.error(`workload: ${(err as Error).message}`);
  process.exit(1);
});

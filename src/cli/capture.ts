// `tapir capture`: records the frames of one port of a running agent into a pcap file.
// The agent writes the file (it sees the frames); this command starts and stops it.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ControlClient } from '../agent/control-client.ts';
import { findAgentSocket } from './agent-socket.ts';
import { CliError } from './errors.ts';

const HELP = `Usage: tapir capture PORT -w FILE [--socket PATH | --lab NAME [--node NODE]] [--seconds N]

Writes a pcap of a running agent's port while traffic flows, until Ctrl-C or --seconds.
PORT is a pod (name, namespace/name or container ID), its TAP name, 'host' (the node's
TUN, raw IP) or 'underlay' (VXLAN datagrams with rebuilt outer headers, which Wireshark
and tshark decode as VXLAN).

Options:
  -w, --write FILE   the pcap file to write (written by the agent)
  --socket PATH      the agent's control socket (default /run/tapir/agent.sock)
  --lab NAME         find the agent in a running lab: the node holding the pod, or --node
  --node NODE        with --lab: the node whose agent to ask (needed for host/underlay)
  --seconds N        stop after N seconds (default: at Ctrl-C; the agent stops by itself
                     after 300 s if this command goes away)`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      write: { type: 'string', short: 'w' }, socket: { type: 'string' }, lab: { type: 'string' },
      node: { type: 'string' }, seconds: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const port = positionals[0];
  if (port === undefined || values.write === undefined) throw new CliError(`capture: PORT and -w FILE are required\n\n${HELP}`, 2);
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  if (seconds !== undefined && !(seconds > 0)) throw new CliError(`capture: --seconds must be a positive number, got '${values.seconds}'`, 2);
  const socket = await findAgentSocket({ port, socket: values.socket, lab: values.lab, node: values.node, command: 'capture' });
  const client = new ControlClient(socket);
  const file = resolve(values.write);
  await client.request({ op: 'captureStart', port, file, seconds: (seconds ?? 300) + 5 });
  console.error(`capturing ${port} (agent ${socket}) to ${file}${seconds === undefined ? '; Ctrl-C to stop' : ` for ${seconds} s`}`);
  await new Promise<void>((done) => {
    // Signal listeners alone do not keep the event loop alive: the timer does.
    const timer = setTimeout(done, (seconds ?? 300) * 1000);
    const stop = (): void => { clearTimeout(timer); done(); };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  const answer = await client.request({ op: 'captureStop', port });
  console.error(`${answer.frames} frames written to ${file}`);
  return 0;
}

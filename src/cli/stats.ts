// `tapir stats`: a running agent's per-port counters, with drops by reason.
import { parseArgs } from 'node:util';
import { ControlClient } from '../agent/control-client.ts';
import { findAgentSocket } from './agent-socket.ts';

const HELP = `Usage: tapir stats [--socket PATH | --lab NAME --node NODE] [--json]

Prints the agent's counters per port (pods, host, underlay): frames and bytes received
and sent, and frames dropped by reason (malformed input, anti-spoofing, no route, ...).`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { socket: { type: 'string' }, lab: { type: 'string' }, node: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const socket = await findAgentSocket({ socket: values.socket, lab: values.lab, node: values.node, command: 'stats' });
  const answer = await new ControlClient(socket).request({ op: 'stats' });
  if (values.json) {
    console.log(JSON.stringify(answer, null, 2));
    return 0;
  }
  const rows = [['PORT', 'KIND', 'RX FRAMES', 'RX BYTES', 'TX FRAMES', 'TX BYTES', 'DROPS']];
  for (const p of answer.ports) {
    const drops = Object.entries(p.drops).map(([k, v]) => `${k}=${v}`).join(' ') || '-';
    rows.push([p.name, p.kind, String(p.rxFrames), String(p.rxBytes), String(p.txFrames), String(p.txBytes), drops]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  console.log(`TCP segments coalesced into TSO frames for pods: ${answer.coalescedSegments}`);
  console.log(`ports removed after a device failure: ${answer.portFailures}; underlay receive errors: ${answer.underlayRecvErrors}`);
  for (const [family, ct, refused] of [['', answer.conntrack, answer.natRefusals], [' (IPv6)', answer.conntrack6 ?? null, answer.natRefusals6 ?? {}]] as const) {
    if (ct !== null) {
      const counters = Object.entries(ct.counters).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
      console.log(`service conntrack${family}: ${ct.entries} of ${ct.capacity} entries (at most ${ct.maxUnassuredPerSource} unanswered per source); ${counters}`);
    }
    const refusals = Object.entries(refused).map(([k, v]) => `${k} ${v}`).join(', ');
    if (refusals !== '') console.log(`service packets refused${family}: ${refusals}`);
  }
  const mib = (n: number): string => (n / 1048576).toFixed(1);
  const m = answer.memory;
  console.log(`agent memory (MiB): rss ${mib(m.rss)}, heap ${mib(m.heapUsed)} used of ${mib(m.heapTotal)}, external ${mib(m.external)} (array buffers ${mib(m.arrayBuffers)})`);
  return 0;
}

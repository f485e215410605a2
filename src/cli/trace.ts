// `tapir trace`: explains what the service tables do with one packet (which service,
// which endpoints were eligible and why, which was chosen and how, the NAT applied,
// the verdict), by running it through the data plane's own NAT engine.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ipv4ToString, ipv6ToString, isIpv6Text, parseIpv4, parseIpv6 } from '../wire/address.ts';
import { EntryPoint } from '../services/nat-codes.ts';
import { parseServiceSnapshot } from '../model/snapshot-json.ts';
import { traceServicePacket, type TracePacket } from '../services/trace.ts';
import { CliError } from './errors.ts';

const HELP = `Usage: tapir trace (--lab NAME --node NODE | --socket PATH | --snapshot FILE)
                   --src IP:PORT --dst IP:PORT [--proto tcp|udp] [--from pod|host|external]
                   (IPv6 too: --src [fd00:10:244:1::2]:40000, through NAT66)
                   [--masquerade-ip IP] [--hairpin-ip IP] [--seed N] [--json]

Runs one packet (a TCP SYN or a UDP datagram) through the service NAT engine and prints
each step: the frontend matched, the endpoints eligible and why, the endpoint chosen and
how, DNAT/SNAT, the verdict. With a running agent (--lab/--node or --socket) the agent's
live service tables and its own masquerade and hairpin addresses are used, and the last
step is the egress: the pod port, the VXLAN tunnel to a node, or the host TUN. With
--snapshot FILE (a ServiceSnapshot JSON file) the engine is built from the file (its
ports6 for an IPv6 packet).

  --from            where the packet enters the node (default pod)
  --masquerade-ip   SNAT source for masqueraded flows (default: the first
                    nodePortAddresses entry, nodePortAddresses6 for IPv6)
  --hairpin-ip      SNAT source when a pod reaches itself (default: masquerade IP)
  --seed            seed of the random endpoint choice (default 1: repeatable)

The trace starts from empty conntrack and affinity state.`;

const FROM: Record<string, number> = { pod: EntryPoint.POD, host: EntryPoint.HOST, external: EntryPoint.EXTERNAL };

/** IP:PORT or [IPv6]:PORT as text, checked; for the live trace, which the agent resolves. */
function endpointText(v: string | undefined, flag: string): [string, number] {
  if (v === undefined) throw new CliError(`trace: ${flag} IP:PORT is required (see tapir trace --help)`, 2);
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d+)$/.exec(v);
  if (m !== null) {
    const port = Number(m[2]);
    if (!isIpv6Text(m[1]!) || port < 1 || port > 65535) throw new CliError(`trace: ${flag} ${v}: expected [IPv6]:PORT, e.g. [fd00:10:244:1::2]:8080`, 2);
    return [m[1]!, port];
  }
  const [a, port] = endpointArg(v, flag);
  return [ipv4ToString(a), port];
}

function endpointArg(v: string | undefined, flag: string): [number, number] {
  if (v === undefined) throw new CliError(`trace: ${flag} IP:PORT is required (see tapir trace --help)`, 2);
  const at = v.lastIndexOf(':');
  const a = parseIpv4(at < 0 ? v : v.slice(0, at));
  const port = at < 0 ? NaN : Number(v.slice(at + 1));
  if (a === undefined || !Number.isInteger(port) || port < 1 || port > 65535) throw new CliError(`trace: ${flag} ${v}: expected IPv4:PORT, e.g. 10.96.0.10:80`, 2);
  return [a, port];
}

function ipArg(v: string, flag: string): number {
  const a = parseIpv4(v);
  if (a === undefined) throw new CliError(`trace: ${flag} ${v}: not an IPv4 address`, 2);
  return a;
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      snapshot: { type: 'string' }, src: { type: 'string' }, dst: { type: 'string' }, proto: { type: 'string', default: 'tcp' },
      from: { type: 'string', default: 'pod' }, 'masquerade-ip': { type: 'string' }, 'hairpin-ip': { type: 'string' },
      seed: { type: 'string', default: '1' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      lab: { type: 'string' }, node: { type: 'string' }, socket: { type: 'string' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.snapshot === undefined) {
    if (values.lab === undefined && values.socket === undefined) throw new CliError('trace: name an agent (--lab NAME --node NODE, or --socket PATH) or a --snapshot FILE (see tapir trace --help)', 2);
    return traceLive(values);
  }
  let text: string;
  try {
    text = readFileSync(values.snapshot, 'utf8');
  } catch (err) {
    throw new CliError(`trace: cannot read ${values.snapshot}: ${(err as Error).message}`);
  }
  const snapshot = parseServiceSnapshot(text, values.snapshot);
  const [srcText, srcPort] = endpointText(values.src, '--src');
  const [dstText, dstPort] = endpointText(values.dst, '--dst');
  const v6 = isIpv6Text(dstText);
  if (isIpv6Text(srcText) !== v6) throw new CliError(`trace: --src ${values.src} and --dst ${values.dst} must be of one family`, 2);
  const proto = values.proto.toLowerCase();
  if (proto !== 'tcp' && proto !== 'udp') throw new CliError(`trace: --proto ${values.proto}: expected tcp or udp`, 2);
  const entryPoint = FROM[values.from];
  if (entryPoint === undefined) throw new CliError(`trace: --from ${values.from}: expected pod, host or external`, 2);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new CliError(`trace: --seed ${values.seed}: expected an integer`, 2);
  const protocol = proto === 'tcp' ? 6 : 17;
  const common = { seed, conntrack: { capacity: 1024, seed: 1 }, affinityCapacity: 16 };
  let result;
  if (v6) {
    // NAT66 masquerades (and hairpins) to one address: the node's IPv6 pod gateway in an agent.
    const given = values['masquerade-ip'] ?? snapshot.nodePortAddresses6?.[0];
    const masq6 = given === undefined ? null : parseIpv6(given);
    if (masq6 === null) throw new CliError(`trace: --masquerade-ip IPv6 is needed${given === undefined ? ': the snapshot lists no nodePortAddresses6 to take it from' : `: ${given} is not an IPv6 address`}`, 2);
    const packet: TracePacket = { protocol, src: ipv6ToString(parseIpv6(srcText)!), srcPort, dst: ipv6ToString(parseIpv6(dstText)!), dstPort, entryPoint };
    result = traceServicePacket(snapshot, packet, { masqueradeIP: 0, masqueradeIP6: masq6, ...common });
  } else {
    let masqueradeIP: number;
    if (values['masquerade-ip'] !== undefined) masqueradeIP = ipArg(values['masquerade-ip'], '--masquerade-ip');
    else if (snapshot.nodePortAddresses.length > 0) masqueradeIP = snapshot.nodePortAddresses[0]!;
    else throw new CliError('trace: --masquerade-ip IP is needed: the snapshot lists no nodePortAddresses to take it from', 2);
    const packet: TracePacket = { protocol, src: parseIpv4(srcText)!, srcPort, dst: parseIpv4(dstText)!, dstPort, entryPoint };
    result = traceServicePacket(snapshot, packet, {
      masqueradeIP,
      hairpinIP: values['hairpin-ip'] !== undefined ? ipArg(values['hairpin-ip'], '--hairpin-ip') : masqueradeIP,
      ...common,
    });
  }
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else for (const s of result.steps) console.log(s);
  return 0;
}

/** Asks a running agent to trace the packet with its live tables. */
async function traceLive(v: { lab?: string | undefined; node?: string | undefined; socket?: string | undefined; src?: string | undefined; dst?: string | undefined; proto: string; from: string; json?: boolean | undefined }): Promise<number> {
  const { findAgentSocket } = await import('./agent-socket.ts');
  const { ControlClient } = await import('../agent/control-client.ts');
  const [src, srcPort] = endpointText(v.src, '--src');
  const [dst, dstPort] = endpointText(v.dst, '--dst');
  if (isIpv6Text(src) !== isIpv6Text(dst)) throw new CliError(`trace: --src ${v.src} and --dst ${v.dst} must be of one family`, 2);
  const proto = v.proto.toLowerCase();
  if (proto !== 'tcp' && proto !== 'udp') throw new CliError(`trace: --proto ${v.proto}: expected tcp or udp`, 2);
  if (FROM[v.from] === undefined) throw new CliError(`trace: --from ${v.from}: expected pod, host or external`, 2);
  const socket = await findAgentSocket({ socket: v.socket, lab: v.lab, node: v.node, command: 'trace' });
  const answer = await new ControlClient(socket).request({
    op: 'trace', protocol: proto === 'tcp' ? 6 : 17, src, srcPort, dst, dstPort, from: v.from as 'pod' | 'host' | 'external',
  });
  if (v.json) console.log(JSON.stringify(answer, null, 2));
  else for (const s of answer.steps) console.log(s);
  return 0;
}

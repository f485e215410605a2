// The query log (CoreDNS's `log` plugin) and the names it and the error messages write:
// one line per answered query whose name and response class the server block's `log`
// selects, in its format with CoreDNS's placeholders ({remote}, {type}, {>rflags}, ...;
// corefile-plugins.ts lists them). It runs after the response is sent and only when a block has
// `log`, so it may build strings: the path without `log` never comes here. The batched
// and data paths carry the client's address as a number; it becomes text only here.
import { ipv4ToString, ipv6ToString } from '../wire/address.ts';
import { matchZone } from './corefile-config.ts';
import type { Block, Client } from './listener.ts';
import { MONITORED_TYPES, Proto, RCODE_NAMES } from './observability.ts';
import type { QueryInfo } from './parts.ts';

const RCODE_NOERROR = 0;
const RCODE_NXDOMAIN = 3;
const TYPE_HINFO = 13;

/** One query-log line for a sent response, through `options.log`, when the block's `log` selects it. */
export function logQuery(options: { log(message: string): void }, block: Block, client: Client, q: QueryInfo, reqLen: number, res: Uint8Array, n: number, seconds: number): void {
  const log = block.config.log!;
  if (matchZone(q.qname, log.names) === undefined) return;
  const rcode = res[3]! & 15;
  const answers = (res[6]! << 8) | res[7]!;
  const cls = rcode === RCODE_NXDOMAIN || (rcode === RCODE_NOERROR && answers === 0) ? 'denial' : rcode === RCODE_NOERROR ? 'success' : 'error';
  if (!log.classes.includes('all') && !log.classes.includes(cls)) return;
  const fields: Record<string, string> = {
    remote: remoteAddress(client), port: String(client.port), type: typeName(q.qtype), class: q.qclass === 1 ? 'IN' : q.qclass === 3 ? 'CH' : `CLASS${q.qclass}`,
    name: `${q.qname}.`, proto: client.proto === Proto.UDP ? 'udp' : 'tcp', size: String(reqLen), rcode: RCODE_NAMES[rcode]!, rsize: String(n),
    duration: `${seconds.toFixed(9).replace(/0+$/, '').replace(/\.$/, '')}s`, '>id': String(q.id), '>do': String(q.dnssecOk),
    '>bufsize': String(q.edns ? q.ednsUdpSize : 512), '>rflags': responseFlags(res), '>opcode': 'QUERY',
  };
  options.log(`[INFO] ${log.format.replace(/\{([^}]*)\}/g, (m, k: string) => fields[k] ?? m)}`);
}

/** The client's address as text (made only for messages: the batched and data paths carry a number). */
export function remoteAddress(client: Client): string {
  if (client.address !== '') return client.address;
  return client.ip6 === null ? ipv4ToString(client.ip) : ipv6ToString(client.ip6);
}

export function typeName(qtype: number): string {
  for (const [t, n] of MONITORED_TYPES) if (t === qtype) return n;
  return qtype === TYPE_HINFO ? 'HINFO' : `TYPE${qtype}`;
}

/** "qr,aa,rd,ra" as CoreDNS's {>rflags} writes a response's flags. */
function responseFlags(res: Uint8Array): string {
  const a = res[2]!;
  const b = res[3]!;
  const out: string[] = [];
  if (a & 0x80) out.push('qr');
  if (a & 0x04) out.push('aa');
  if (a & 0x02) out.push('tc');
  if (a & 0x01) out.push('rd');
  if (b & 0x80) out.push('ra');
  if (b & 0x40) out.push('z');
  if (b & 0x20) out.push('ad');
  if (b & 0x10) out.push('cd');
  return out.join(',');
}

// Stand-ins for the DNS server's parts written in parallel (message.ts,
// kubernetes-zone.ts, forward.ts, cache.ts), for the server's own tests until those are
// merged: small, slow and built on dns-packet, but following the same contracts
// (src/dns/parts.ts), so what the server tests check is the server's job: routing by
// zone, plugin order, UDP and TCP, truncation, FORMERR, metrics, health and ready.
// `tapir dns` loads this module instead of the real parts when TAPIR_DNS_TEST_PARTS names it.
import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import type { ClusterView } from '../../src/model/cluster-view.ts';
import { ipv4ToString } from '../../src/wire/index.ts';
import { matchZone } from '../../src/dns/corefile.ts';
import { randomInt } from 'node:crypto';
import type { CacheOptions, CachePart, DnsParts, ForwarderOptions, ForwarderPart, KubernetesZoneOptions, LoopPart, QueryInfo, ZonePart } from '../../src/dns/parts.ts';

function newQueryInfo(): QueryInfo {
  return { id: 0, flags: 0, qname: '', qtype: 0, qclass: 0, questionEnd: 0, edns: false, ednsUdpSize: 0, dnssecOk: false };
}

/** Offset after the question's name and type/class, or -1. */
function questionEnd(msg: Uint8Array, len: number): number {
  let o = 12;
  for (;;) {
    if (o >= len) return -1;
    const l = msg[o]!;
    if (l === 0) { o++; break; }
    if (l > 63) return -1;
    o += 1 + l;
  }
  return o + 4 <= len ? o + 4 : -1;
}

function readQuery(msg: Uint8Array, len: number, out: QueryInfo): boolean {
  if (len < 12) return false;
  const flags = (msg[2]! << 8) | msg[3]!;
  if ((flags & 0x8000) !== 0 || ((flags >> 11) & 15) !== 0) return false;
  if (((msg[4]! << 8) | msg[5]!) !== 1 || msg[6] !== 0 || msg[7] !== 0 || msg[8] !== 0 || msg[9] !== 0) return false;
  const end = questionEnd(msg, len);
  if (end < 0) return false;
  let p: dnsPacket.Packet;
  try {
    p = dnsPacket.decode(Buffer.from(msg.buffer, msg.byteOffset, len));
  } catch {
    return false;
  }
  const q = p.questions?.[0];
  if (q === undefined) return false;
  out.id = p.id ?? 0;
  out.flags = flags;
  out.qname = q.name.toLowerCase().replace(/\.$/, '');
  out.qtype = (msg[end - 4]! << 8) | msg[end - 3]!;
  out.qclass = (msg[end - 2]! << 8) | msg[end - 1]!;
  out.questionEnd = end;
  const opt = (p.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number; flags?: number } | undefined;
  out.edns = opt !== undefined;
  out.ednsUdpSize = opt?.udpPayloadSize ?? 0;
  out.dnssecOk = ((opt?.flags ?? 0) & 0x8000) !== 0;
  return true;
}

function errorResponse(req: Uint8Array, reqLen: number, rcode: number, res: Uint8Array): number {
  if (reqLen < 12) return 0;
  const end = questionEnd(req, reqLen);
  for (let i = 0; i < 12; i++) res[i] = req[i]!;
  res[2] = (req[2]! & 0x79) | 0x80; // QR, keep opcode and RD
  res[3] = rcode & 15;
  res[4] = 0; res[5] = end > 0 ? 1 : 0;
  for (let i = 6; i < 12; i++) res[i] = 0;
  if (end < 0) return 12;
  for (let i = 12; i < end; i++) res[i] = req[i]!;
  return end;
}

function shuffleAnswers(msg: Uint8Array, len: number, random: () => number): void {
  let p: dnsPacket.Packet;
  try { p = dnsPacket.decode(Buffer.from(msg.buffer, msg.byteOffset, len)); } catch { return; }
  const answers = p.answers ?? [];
  if (answers.length < 2) return;
  const shift = Math.floor(random() * answers.length);
  p.answers = [...answers.slice(shift), ...answers.slice(0, shift)];
  const out = dnsPacket.encode(p);
  if (out.length === len) msg.set(out);
}

/** Services' A records and NXDOMAIN with a SOA, enough for the server's tests. */
class StandInZone implements ZonePart {
  readonly #o: KubernetesZoneOptions;
  #records = new Map<string, string[]>();
  constructor(o: KubernetesZoneOptions) { this.#o = o; }

  update(view: ClusterView): void {
    const records = new Map<string, string[]>();
    const zone = this.#o.zones[0]!;
    for (const s of view.services) {
      const ips = s.headless ? s.endpoints.filter((e) => e.ready).map((e) => ipv4ToString(e.ip)) : s.clusterIP !== 0 ? [ipv4ToString(s.clusterIP)] : [];
      records.set(`${s.name}.${s.namespace}.svc.${zone}`, ips);
    }
    this.#records = records;
  }

  owns(qname: string): boolean { return matchZone(qname, this.#o.zones) !== undefined; }

  answer(req: Uint8Array, reqLen: number, q: QueryInfo, res: Uint8Array, maxSize: number): number {
    const zone = matchZone(q.qname, this.#o.zones);
    if (zone === undefined) return 0;
    const ips = this.#records.get(q.qname);
    const fall = this.#o.fallthrough;
    if (ips === undefined && fall !== null && (fall.length === 0 || matchZone(q.qname, fall) !== undefined)) return 0;
    const soa = { name: zone, type: 'SOA' as const, ttl: this.#o.ttl, data: { mname: `ns.dns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 7200, retry: 1800, expire: 86400, minimum: this.#o.ttl } };
    const packet: dnsPacket.Packet = {
      // dns-packet takes the rcode in the flags' low 4 bits.
      type: 'response', id: q.id, flags: dnsPacket.AUTHORITATIVE_ANSWER | (q.flags & 0x0100) | (ips === undefined ? 3 : 0),
      questions: [{ name: q.qname, type: 'A', class: 'IN' }],
      answers: q.qtype === 1 && ips !== undefined ? ips.map((ip) => ({ name: q.qname, type: 'A' as const, ttl: this.#o.ttl, data: ip })) : [],
      authorities: ips === undefined || q.qtype !== 1 ? [soa] : [],
    };
    let out = dnsPacket.encode(packet);
    if (out.length > maxSize) {
      out = dnsPacket.encode({ ...packet, flags: (packet.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [] });
    }
    // The question as asked (its type may not be A).
    out.writeUInt16BE(q.qtype, 12 + Buffer.byteLength(q.qname) + 2);
    res.set(out);
    void req; void reqLen;
    return out.length;
  }
}

/** UDP to the first healthy upstream, then the next; TCP is left to the real forwarder. */
class StandInForwarder implements ForwarderPart {
  readonly #o: ForwarderOptions;
  readonly #stats: { upstream: string; requests: number; failures: number; healthy: boolean }[];
  constructor(o: ForwarderOptions) {
    this.#o = o;
    this.#stats = o.upstreams.map((u) => ({ upstream: `${u.address}:${u.port}`, requests: 0, failures: 0, healthy: true }));
  }
  async query(msg: Uint8Array, len: number, q: QueryInfo): Promise<Uint8Array> {
    for (let i = 0; i < this.#o.upstreams.length; i++) {
      const u = this.#o.upstreams[i]!;
      const s = this.#stats[i]!;
      s.requests++;
      try {
        const res = await udpExchange(msg.subarray(0, len), u.address, u.port, this.#o.timeoutMs);
        res[0] = q.id >> 8; res[1] = q.id & 0xff;
        return res;
      } catch {
        s.failures++;
      }
    }
    throw Object.assign(new Error('all upstreams failed'), { code: 'DNS_UPSTREAM_FAILED' });
  }
  stats(): { upstream: string; requests: number; failures: number; healthy: boolean }[] { return this.#stats.map((s) => ({ ...s })); }
  close(): void {}
}

function udpExchange(msg: Uint8Array, address: string, port: number, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(address.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => { socket.close(); reject(new Error(`timeout after ${timeoutMs} ms`)); }, timeoutMs);
    socket.on('message', (data) => { clearTimeout(timer); socket.close(); resolve(new Uint8Array(data)); });
    socket.on('error', (err) => { clearTimeout(timer); socket.close(); reject(err); });
    socket.send(msg, port, address);
  });
}

/** Whole responses by name and type, TTLs not rewritten (the real cache does RFC 2308). */
class StandInCache implements CachePart {
  readonly #o: CacheOptions;
  readonly #entries = new Map<string, { response: Uint8Array; expires: number; denial: boolean }>();
  #hits = { success: 0, denial: 0 };
  #misses = 0;
  constructor(o: CacheOptions) { this.#o = o; }
  get(q: QueryInfo, res: Uint8Array, nowMs: number): number {
    const e = this.#entries.get(`${q.qname}/${q.qtype}`);
    if (e === undefined || e.expires <= nowMs) { this.#misses++; return 0; }
    if (e.denial) this.#hits.denial++; else this.#hits.success++;
    res.set(e.response);
    res[0] = q.id >> 8; res[1] = q.id & 0xff;
    return e.response.length;
  }
  put(q: QueryInfo, response: Uint8Array, len: number, nowMs: number): void {
    const rcode = response[3]! & 15;
    if ((response[2]! & 0x02) !== 0 || (rcode !== 0 && rcode !== 3)) return;
    const denial = rcode === 3 || (response[6] === 0 && response[7] === 0);
    this.#entries.set(`${q.qname}/${q.qtype}`, { response: response.slice(0, len), expires: nowMs + 1000 * (denial ? this.#o.maxDenialTtl : this.#o.maxTtl), denial });
  }
  stats(): { hits: { success: number; denial: number }; misses: number; entries: { success: number; denial: number } } {
    let denial = 0;
    for (const e of this.#entries.values()) if (e.denial) denial++;
    return { hits: { ...this.#hits }, misses: this.#misses, entries: { success: this.#entries.size - denial, denial } };
  }
}

/** CoreDNS's loop probe: HINFO <random>.<random>.<zone> through the server, a loop when seen a third time. */
class StandInLoop implements LoopPart {
  readonly probeName: string;
  readonly #zone: string;
  #count = 0;
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;
  #socket: import('node:dgram').Socket | null = null;
  constructor(zone: string) {
    this.#zone = zone;
    const r = (): string => String(randomInt(2 ** 47));
    this.probeName = zone === '' ? `${r()}.${r()}` : `${r()}.${r()}.${zone}`;
  }
  seen(q: { readonly qname: string; readonly qtype: number }): boolean {
    return !this.#stopped && q.qtype === 13 && q.qname === this.probeName && ++this.#count > 2;
  }
  error(remote: string, local: string): Error & { code: string } {
    return Object.assign(new Error(`Loop (${remote} -> ${local}) detected for zone "${this.#zone === '' ? '.' : `${this.#zone}.`}", see https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO ${this.probeName}."`), { code: 'DNS_LOOP_DETECTED' });
  }
  start(target: { address: string; port: number }): Promise<'answered' | 'loop' | 'deadline' | 'stopped'> {
    const address = target.address === '0.0.0.0' || target.address === '' ? '127.0.0.1' : target.address;
    const probe = dnsPacket.encode({ type: 'query', id: randomInt(65536), flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: this.probeName, type: 'HINFO' }] });
    return new Promise((resolve) => {
      const socket = createSocket(address.includes(':') ? 'udp6' : 'udp4');
      this.#socket = socket;
      let tries = 0;
      const end = (result: 'answered' | 'loop' | 'deadline' | 'stopped'): void => {
        if (this.#timer !== null) clearTimeout(this.#timer);
        this.#timer = null;
        if (this.#socket !== null) { this.#socket.close(); this.#socket = null; }
        resolve(result);
      };
      const send = (): void => {
        if (this.#stopped) return end('stopped');
        if (++tries > 30) return end('deadline');
        socket.send(probe, target.port, address);
        this.#timer = setTimeout(send, 1000);
      };
      socket.on('error', () => {});
      socket.on('message', () => end('answered'));
      send();
    });
  }
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#socket !== null) { this.#socket.close(); this.#socket = null; }
  }
}

export const parts: DnsParts = {
  newQueryInfo, readQuery, errorResponse, shuffleAnswers,
  createZone: (o) => new StandInZone(o),
  createForwarder: (o) => new StandInForwarder(o),
  createCache: (o) => new StandInCache(o),
  createLoopDetector: (zone) => new StandInLoop(zone),
};

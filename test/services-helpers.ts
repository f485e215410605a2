// Shared by the services-*.test.ts packet-trace tests: build a packet, run it through
// ServiceNat.process(), read back the rewritten tuple with checksums verified.
import assert from 'node:assert/strict';
import {
  IpProtocol, LinkType, PacketInfo, TcpFlags, buildPacket, decodeFrame, ipv4ToString, verifyChecksums, type PacketRepr,
} from '../src/wire/index.ts';
import { ServiceNat, type ServiceNatOptions } from '../src/services/nat.ts';
import { buildServiceTable } from '../src/tables/service-table.ts';
import { ip } from '../src/model/synthetic.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';

export const NODE_IP = ip('192.168.1.10');
export const HAIRPIN_IP = ip('10.244.1.1');
export { TcpFlags };

export function makeNat(snap: ServiceSnapshot, over: Partial<ServiceNatOptions> = {}): ServiceNat {
  return new ServiceNat(buildServiceTable(snap), { masqueradeIP: NODE_IP, hairpinIP: HAIRPIN_IP, seed: 12345, conntrack: { seed: 7 }, ...over });
}

export interface Flow {
  proto?: 'tcp' | 'udp';
  src: string;
  dst: string;
  flags?: number;
  payload?: number;
  partial?: boolean;
}

function split(ep: string): [number, number] {
  const [a, p] = ep.split(':');
  return [ip(a!), Number(p)];
}

export function packet(f: Flow): Uint8Array {
  const [src, sport] = split(f.src);
  const [dst, dport] = split(f.dst);
  const r: PacketRepr = { ipv4: { src, dst, ttl: 64 }, payload: new Uint8Array(f.payload ?? 11).map((_, i) => i * 7) };
  if ((f.proto ?? 'tcp') === 'tcp') r.tcp = { srcPort: sport, dstPort: dport, seq: 1000, ack: 0, flags: f.flags ?? TcpFlags.SYN };
  else r.udp = { srcPort: sport, dstPort: dport };
  if (f.partial) r.l4Checksum = 'partial';
  return buildPacket(r);
}

export function decode(buf: Uint8Array, info = new PacketInfo()): PacketInfo {
  const reason = decodeFrame(info, buf, 0, buf.length, LinkType.RAW_IP);
  assert.equal(reason, 0, 'packet decodes');
  return info;
}

export interface Seen {
  verdict: number;
  src: string;
  dst: string;
  buf: Uint8Array;
  info: PacketInfo;
}

/** Runs one packet; returns the verdict and the packet's tuple afterwards (checksums verified when NATed). */
export function send(nat: ServiceNat, f: Flow | Uint8Array, entryPoint: number, now = 1): Seen {
  const buf = f instanceof Uint8Array ? f : packet(f);
  const info = decode(buf);
  const partial = !(f instanceof Uint8Array) && f.partial === true;
  const verdict = nat.process(info, buf, entryPoint, partial, now);
  const after = decode(buf);
  assert.ok(verifyChecksums(after, buf, partial), 'checksums valid after process()');
  // The PacketInfo process() updated agrees with the bytes.
  assert.equal(info.src4, after.src4);
  assert.equal(info.dst4, after.dst4);
  if (after.protocol === IpProtocol.TCP || after.protocol === IpProtocol.UDP) {
    assert.equal(info.srcPort, after.srcPort);
    assert.equal(info.dstPort, after.dstPort);
  }
  return { verdict, src: `${ipv4ToString(after.src4)}:${after.srcPort}`, dst: `${ipv4ToString(after.dst4)}:${after.dstPort}`, buf, info: after };
}

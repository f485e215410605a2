// Robustness: a million random and mutated frames through decodeFrame, every view,
// checksum verification, NAT rewrites and the reply builders. Nothing may throw, no
// decoded offset may point outside the frame, and no write may land outside it.
// Seeded: WIRE_FUZZ_SEED / WIRE_FUZZ_N reproduce or extend a run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ArpPacket, DropReason, EthernetFrame, Icmpv4Packet, Icmpv6Packet, Icmpv6Type, Ipv4Packet, Ipv6Packet, LinkType, PacketInfo,
  TcpFlags, TcpSegment, UdpDatagram, VirtioNetHeader, VxlanHeader, buildPacket, decodeFrame, dropReasonNames, emitIcmpv4PortUnreachable,
  emitIcmpv6PortUnreachable, emitTcpReset, icmpErrorAllowed, natRewriteDst4, natRewriteDst6, natRewriteQuotedDst4, natRewriteQuotedDst6,
  natRewriteQuotedSrc6, natRewriteSrc4, natRewriteSrc6, parseIpv6, verifyChecksums, type PacketRepr,
} from '../src/wire/index.ts';
import { allFrames } from './fixtures/wire/frames.ts';
import { Prng } from './fixtures/wire/prng.ts';

const SEED = Number(process.env.WIRE_FUZZ_SEED ?? 0x7a91);
const N = Number(process.env.WIRE_FUZZ_N ?? 1_000_000);
const CANARY = 0xa5;
const GUARD = 16;

const eth = new EthernetFrame();
const arp = new ArpPacket();
const ip4 = new Ipv4Packet();
const ip6 = new Ipv6Packet();
const tcp = new TcpSegment();
const udp = new UdpDatagram();
const icmp4 = new Icmpv4Packet();
const icmp6 = new Icmpv6Packet();
const vxlan = new VxlanHeader();
const vnet = new VirtioNetHeader(true);
const info = new PacketInfo();
const reply = new Uint8Array(2048);
const addr6 = new Int32Array(4);

// IPv6 seeds the captures lack, for the NAT66 rewrites: TCP, and ICMPv6 errors quoting
// TCP (whole and cut) and an echo (the captured one quotes UDP).
function ipv6Seeds(): Uint8Array[] {
  const base: PacketRepr = { eth: { dst: 0x02000000000b, src: 0x02000000000a }, ipv6: { src: parseIpv6('fd00:10:244:1::5')!, dst: parseIpv6('fd00:10:96::80')! }, payload: new Uint8Array(24).fill(7) };
  const tcp6 = buildPacket({ ...base, tcp: { srcPort: 40000, dstPort: 80, seq: 1, ack: 2, flags: TcpFlags.ACK } });
  const echo6 = buildPacket({ ...base, icmp: { type: Icmpv6Type.ECHO_REQUEST, code: 0, restOfHeader: 0x12340001 } });
  const errors = [tcp6, echo6].map((f) => {
    const i = new PacketInfo();
    decodeFrame(i, f, 0, f.length, LinkType.ETHERNET);
    const out = new Uint8Array(400);
    return out.slice(0, emitIcmpv6PortUnreachable(out, 0, i, f));
  });
  // The TCP error with its quote cut after 8 and 17 bytes of TCP (RFC 4443 lets a
  // quote end anywhere), payload length to match: rewrites must stop at the cut.
  const cut = [8, 17].map((n) => {
    const f = errors[0]!.slice(0, 14 + 40 + 8 + 40 + n);
    f[18] = (f.length - 54) >>> 8; f[19] = (f.length - 54) & 0xff;
    return f;
  });
  return [tcp6, ...errors, ...cut];
}

// Offsets of length fields worth lying about, relative to the frame (Ethernet at 0).
const LIES = [
  [14, 1], // IPv4 version/IHL, or the IPv6 version nibble
  [16, 2], // IPv4 total length
  [18, 2], // IPv6 payload length
  [20, 1], // IPv6 next header
  [34, 2], // UDP length sits at 38, TCP data offset at 46: both below
  [38, 2],
  [46, 1],
  [54, 1], // IPv6 first extension header: next header / length
  [55, 1],
  [58, 2], // UDP length over IPv6
  [42, 1], // VXLAN flags / quoted IPv4 IHL in an ICMP error
  [44, 2], // quoted IPv4 total length
] as const;

function mutate(rng: Prng, src: Uint8Array, out: Uint8Array): number {
  let len = src.length;
  out.set(src, GUARD);
  const kind = rng.below(8);
  if (kind <= 1 || kind === 7) len = rng.below(src.length + 1); // truncation
  if (kind >= 2 && kind <= 4) { // bit flips
    const flips = 1 + rng.below(8);
    for (let k = 0; k < flips; k++) out[GUARD + rng.below(len)]! ^= 1 << rng.below(8);
  }
  if (kind >= 4) { // length fields that lie
    const lies = 1 + rng.below(3);
    for (let k = 0; k < lies; k++) {
      const [at, size] = LIES[rng.below(LIES.length)]!;
      if (at + size > len) continue;
      const v = rng.below(4) === 0 ? rng.below(1 << (8 * size)) : [0, 1, 5, 15, 0xff, 0xffff, len, len - at][rng.below(8)]! & ((1 << (8 * size)) - 1);
      if (size === 1) out[GUARD + at] = v; else { out[GUARD + at] = v >>> 8; out[GUARD + at + 1] = v & 0xff; }
    }
  }
  out.fill(CANARY, GUARD + len); // a truncated copy must not leave fixture bytes behind
  return len;
}

function randomFrame(rng: Prng, out: Uint8Array): number {
  const len = rng.below(160);
  rng.fill(out, GUARD, len);
  // Often a plausible start, so the bytes get past the first checks.
  if (len >= 15 && rng.below(2) === 0) {
    const t = [0x0800, 0x86dd, 0x0806, 0x8100][rng.below(4)]!;
    out[GUARD + 12] = t >>> 8; out[GUARD + 13] = t & 0xff;
    if (t === 0x0800) out[GUARD + 14] = 0x45 + rng.below(11);
    if (t === 0x86dd) out[GUARD + 14] = 0x60;
  }
  return len;
}

function checkInfo(i: PacketInfo, start: number, end: number): void {
  const within = (o: number, n: number) => o === -1 || (o >= start && n >= 0 && o + n <= end);
  if (!within(i.l3Offset, 0) || !within(i.l4Offset, i.l4Length) || !within(i.payloadOffset, i.payloadLength)
    || !within(i.innerOffset, i.innerLength) || !within(i.origL3Offset, 0) || !within(i.origL4Offset, 8)
    || !within(i.src6Offset, 16) || !within(i.dst6Offset, 16) || !within(i.origSrc6Offset, 16) || !within(i.origDst6Offset, 16)) {
    throw new Error(`offset outside the frame: ${JSON.stringify({ ...i, wide: [...i.wide] })}`);
  }
  if (i.dropReason < 0 || i.dropReason >= Object.keys(DropReason).length) throw new Error(`bad drop reason ${i.dropReason}`);
}

// Wrap every view somewhere in the frame and read its fields.
function poke(rng: Prng, b: Uint8Array, start: number, len: number): number {
  let acc = 0;
  const at = start + rng.below(Math.min(len, 60) + 1);
  const n = start + len - at;
  if (eth.wrap(b, at, n)) acc += eth.dst + eth.src + eth.ethertype + eth.vlanId + eth.payloadLength;
  if (arp.wrap(b, at, n)) acc += arp.op + arp.senderIp + arp.targetMac;
  if (ip4.wrap(b, at, n)) acc += ip4.src + ip4.dst + ip4.ttl + ip4.payloadLength + ip4.fragmentOffset + (ip4.verifyChecksum() ? 1 : 0);
  if (ip4.wrapEmbedded(b, at, n)) acc += ip4.headerLength;
  if (ip6.wrap(b, at, n)) acc += ip6.upperOffset + ip6.upperLength + ip6.fragmentIdent + ip6.srcWord(3);
  if (ip6.wrapEmbedded(b, at, n)) acc += ip6.upperProtocol;
  if (tcp.wrap(b, at, n)) acc += tcp.seq + tcp.ack + tcp.flags + tcp.mss + tcp.payloadLength + tcp.findOption(8);
  if (udp.wrap(b, at, n)) acc += udp.srcPort + udp.payloadLength + (udp.verifyChecksum(0, true) ? 1 : 0);
  if (icmp4.wrap(b, at, n)) { acc += icmp4.type + icmp4.nextHopMtu; if (icmp4.embedded(ip4)) acc += ip4.src; }
  if (icmp6.wrap(b, at, n)) { acc += icmp6.mtu + icmp6.ndTargetOffset; if (icmp6.embedded(ip6)) acc += ip6.upperOffset; }
  if (vxlan.wrap(b, at, n)) acc += vxlan.vni + vxlan.innerLength;
  if (vnet.wrap(b, at, n)) acc += vnet.gsoSize + vnet.csumStart + vnet.numBuffers;
  return acc;
}

test(`fuzz: ${N} random and mutated frames, seed ${SEED}`, (t) => {
  const rng = new Prng(SEED);
  const seeds = [...allFrames.map(([, f]) => f), ...ipv6Seeds()];
  const buf = new Uint8Array(GUARD + 1600 + GUARD);
  const counts = new Int32Array(Object.keys(DropReason).length);
  let acc = 0;
  let counts6 = 0;
  for (let iter = 0; iter < N; iter++) {
    buf.fill(CANARY);
    const len = rng.below(4) === 0 ? randomFrame(rng, buf) : mutate(rng, seeds[rng.below(seeds.length)]!, buf);
    const start = GUARD;
    const end = GUARD + len;
    const frame = buf.slice(start, end);
    try {
      const reason = decodeFrame(info, buf, start, len, LinkType.ETHERNET);
      counts[reason]!++;
      checkInfo(info, start, end);
      acc += verifyChecksums(info, buf) ? 1 : 0;
      acc += verifyChecksums(info, buf, true) ? 1 : 0;
      if ((iter & 63) === 0 && icmpErrorAllowed(info, buf)) {
        const n = info.ipVersion === 4 ? emitIcmpv4PortUnreachable(reply, 0, info, buf) : emitIcmpv6PortUnreachable(reply, 0, info, buf);
        const check = new PacketInfo();
        if (decodeFrame(check, reply, 0, n, LinkType.ETHERNET) !== DropReason.OK) throw new Error('an ICMP error we built does not decode');
        acc += emitTcpReset(reply, 0, info, buf);
      }
      if (info.ipVersion === 4 && reason === DropReason.OK) {
        natRewriteDst4(info, buf, rng.next(), rng.below(65536), (iter & 1) === 0);
        natRewriteSrc4(info, buf, rng.next(), -1, false);
        natRewriteQuotedDst4(info, buf, rng.next(), rng.below(65536));
      }
      // NAT66 on every frame whose IPv6 header decoded, even one whose L4 or quote did
      // not: the rewrites must keep to what the decode vouched for.
      if (info.ipVersion === 6) {
        for (let k = 0; k < 4; k++) addr6[k] = rng.next() | 0;
        natRewriteDst6(info, buf, addr6, 0, rng.below(65536), (iter & 1) === 0);
        natRewriteSrc6(info, buf, addr6, 0, rng.below(3) === 0 ? -1 : rng.below(65536), (iter & 2) === 0);
        natRewriteQuotedDst6(info, buf, addr6, 0, rng.below(65536));
        natRewriteQuotedSrc6(info, buf, addr6, 0, -1);
        checkInfo(info, start, end);
        counts6++;
      }
      decodeFrame(info, buf, start + 14, len - 14, LinkType.RAW_IP);
      checkInfo(info, start, end);
      acc += poke(rng, buf, start, len);
      for (let k = 0; k < GUARD; k++) {
        if (buf[k] !== CANARY || buf[end + k] !== CANARY) throw new Error('a write landed outside the frame');
      }
    } catch (err) {
      assert.fail(`iteration ${iter} (WIRE_FUZZ_SEED=${SEED}): ${(err as Error).stack}\nframe: ${Buffer.from(frame).toString('hex')}`);
    }
  }
  assert.ok(Number.isFinite(acc));
  t.diagnostic(`drop reasons: ${[...counts].map((c, r) => `${dropReasonNames[r]}=${c}`).join(' ')}`);
  t.diagnostic(`IPv6 frames through the NAT66 rewrites: ${counts6}`);
  assert.ok(counts6 > N / 20, `IPv6 frames rewritten: ${counts6}`);
  // The mutations reach every layer: most reasons occur, and so do clean decodes.
  const seen = [...counts].filter((c) => c > 0).length;
  assert.ok(counts[DropReason.OK]! > N / 20, `ok decodes: ${counts[DropReason.OK]}`);
  assert.ok(seen >= 18, `drop reasons reached: ${seen}`);
});

// The data path's local UDP service (the cluster DNS server's fast path): a pod's
// datagram to one of its addresses and its port is answered in place, back out the
// pod's own port, with both checksums right; what the answerer passes on, and every
// other address or port, takes the ordinary route to the host TUN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyChecksums } from '../src/wire/verify.ts';
import { ForwardingTable } from '../src/datapath/forwarding.ts';
import { ipv6ToString, parseCidr6, parseIpv6 } from '../src/wire/address.ts';
import {
  CLUSTER_CIDR, GATEWAY_MAC, MAC_A, MAC_B, MTU, POD_A, POD_B, POD_CIDR, REMOTE_NODE_IP, REMOTE_POD_CIDR, Rig, UNDERLAY_IP, VNI,
  decodeHostFrame, decodePodFrame, ip, pattern, withVnet, readVnet,
} from './helpers/datapath.ts';

const DNS_IP = ip('10.96.0.10');

const query = (dst: number, dstPort: number, payload: Uint8Array, ttl = 64) => withVnet({
  eth: { dst: GATEWAY_MAC, src: MAC_A },
  ipv4: { src: POD_A, dst, ttl, dontFragment: false },
  udp: { srcPort: 40000, dstPort },
  payload,
});

/** Answers payloads that start with 1 (the reply: the payload reversed, plus three bytes); passes the rest. */
const answerer = {
  seen: [] as number[],
  answer(b: Buffer, off: number, len: number, out: Buffer, src: number): number {
    this.seen.push(src);
    if (b[off] !== 1) return 0;
    for (let i = 0; i < len; i++) out[i] = b[off + len - 1 - i]!;
    out[len] = 7; out[len + 1] = 8; out[len + 2] = 9;
    return len + 3;
  },
};

test('a pod\'s datagram to the local UDP service is answered in place; a passed one goes to the host TUN', async () => {
  const rig = new Rig();
  try {
    rig.datapath.setLocalUdpService([DNS_IP], 53, answerer);
    const payload = pattern(40);
    payload[0] = 1;
    await rig.send(rig.podA, query(DNS_IP, 53, payload));
    const [reply] = rig.podA.takeWritten();
    assert.ok(reply !== undefined, 'the reply comes back out the asking pod\'s port');
    assert.equal(rig.host.takeWritten().length, 0);
    const info = decodePodFrame(reply);
    assert.equal(info.ethDst, MAC_A);
    assert.equal(info.ethSrc, GATEWAY_MAC);
    assert.equal(info.src4, DNS_IP);
    assert.equal(info.dst4, POD_A);
    assert.equal(info.srcPort, 53);
    assert.equal(info.dstPort, 40000);
    assert.equal(info.ttl, 64);
    assert.equal(info.payloadLength, 43);
    assert.ok(verifyChecksums(info, reply), 'IPv4 and UDP checksums are complete');
    assert.equal(readVnet(reply).flags, 0);
    const body = reply.subarray(info.payloadOffset, info.payloadOffset + info.payloadLength);
    assert.deepEqual([...body.subarray(0, 40)], [...payload].reverse());
    assert.deepEqual([...body.subarray(40)], [7, 8, 9]);
    assert.equal(rig.datapath.localUdpAnswered, 1);

    // Passed on by the answerer: routed to the node's stack unchanged but for the TTL.
    const passed = pattern(40);
    passed[0] = 2;
    await rig.send(rig.podA, query(DNS_IP, 53, passed));
    assert.equal(rig.podA.takeWritten().length, 0);
    assert.equal(rig.host.takeWritten().length, 1);
    assert.equal(rig.datapath.localUdpPassed, 1);

    // Another port, or another address: never offered.
    const before = answerer.seen.length;
    await rig.send(rig.podA, query(DNS_IP, 5353, payload));
    await rig.send(rig.podA, query(ip('10.96.0.11'), 53, payload));
    assert.equal(answerer.seen.length, before);
    assert.equal(rig.host.takeWritten().length, 2);

    // Removed: everything goes to the host again.
    rig.datapath.setLocalUdpService([], 53, null);
    await rig.send(rig.podA, query(DNS_IP, 53, payload));
    assert.equal(rig.host.takeWritten().length, 1);
    assert.equal(rig.podA.takeWritten().length, 0);
  } finally {
    rig.close();
  }
});

const v6 = (text: string): Uint8Array => parseIpv6(text)!;
const DNS_IP6 = v6('fd00:10:96::a');
const POD_A6 = v6('fd00:10:244:1::2');

/** The standard rig with pods A and B on an IPv6 range too (the agent's IPv6-only pods route alike). */
function rig6(): Rig {
  const rig = new Rig();
  rig.datapath.setTable(new ForwardingTable({
    podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR, underlayIP: UNDERLAY_IP, vni: VNI, mtu: MTU,
    pods: [{ port: rig.portA, ip: POD_A, mac: MAC_A, ip6: POD_A6 }, { port: rig.portB, ip: POD_B, mac: MAC_B, ip6: v6('fd00:10:244:1::3') }],
    podCIDR6: parseCidr6('fd00:10:244:1::/64')!, clusterCIDR6: parseCidr6('fd00:10:244::/56')!,
    remotes: [{ name: 'node-2', underlayIP: REMOTE_NODE_IP, podCIDR: REMOTE_POD_CIDR, podCIDR6: parseCidr6('fd00:10:244:2::/64')! }],
  }));
  return rig;
}

const query6 = (dst: Uint8Array, dstPort: number, payload: Uint8Array) => withVnet({
  eth: { dst: GATEWAY_MAC, src: MAC_A },
  ipv6: { src: POD_A6, dst, hopLimit: 64 },
  udp: { srcPort: 40000, dstPort },
  payload,
});

/** As `answerer`, for IPv6: records the client's address (16 bytes at srcOffset) as text. */
const answerer6 = {
  seen: [] as string[],
  answer(b: Buffer, off: number, len: number, out: Buffer, srcOffset: number): number {
    this.seen.push(ipv6ToString(b.subarray(srcOffset, srcOffset + 16)));
    if (b[off] !== 1) return 0;
    for (let i = 0; i < len; i++) out[i] = b[off + len - 1 - i]!;
    out[len] = 7; out[len + 1] = 8; out[len + 2] = 9;
    return len + 3;
  },
};

test('IPv6: a pod\'s datagram to an IPv6 local UDP address is answered in place (UDP checksum set); passed ones, other ports and addresses go to the host TUN', async () => {
  const rig = rig6();
  try {
    rig.datapath.setLocalUdpService6([DNS_IP6], 53, answerer6);
    const payload = pattern(40);
    payload[0] = 1;
    await rig.send(rig.podA, query6(DNS_IP6, 53, payload));
    const [reply] = rig.podA.takeWritten();
    assert.ok(reply !== undefined, 'the reply comes back out the asking pod\'s port');
    assert.equal(rig.host.takeWritten().length, 0);
    assert.deepEqual(answerer6.seen, ['fd00:10:244:1::2'], 'the answerer is told the client\'s address');
    const info = decodePodFrame(reply);
    assert.equal(info.ipVersion, 6);
    assert.equal(info.ethDst, MAC_A);
    assert.equal(info.ethSrc, GATEWAY_MAC);
    assert.equal(ipv6ToString(reply.subarray(info.src6Offset, info.src6Offset + 16)), 'fd00:10:96::a');
    assert.equal(ipv6ToString(reply.subarray(info.dst6Offset, info.dst6Offset + 16)), 'fd00:10:244:1::2');
    assert.equal(info.srcPort, 53);
    assert.equal(info.dstPort, 40000);
    assert.equal(info.ttl, 64, 'a fresh hop limit');
    assert.equal(info.payloadLength, 43);
    assert.ok(verifyChecksums(info, reply), 'the UDP checksum (mandatory over IPv6) is complete');
    assert.equal(readVnet(reply).flags, 0);
    const body = reply.subarray(info.payloadOffset, info.payloadOffset + info.payloadLength);
    assert.deepEqual([...body.subarray(0, 40)], [...payload].reverse());
    assert.deepEqual([...body.subarray(40)], [7, 8, 9]);
    assert.equal(rig.datapath.localUdpAnswered, 1);

    // Passed on by the answerer: routed to the node's stack (a raw IPv6 packet on the TUN), hop limit - 1.
    const passed = pattern(40);
    passed[0] = 2;
    await rig.send(rig.podA, query6(DNS_IP6, 53, passed));
    assert.equal(rig.podA.takeWritten().length, 0);
    const [toHost] = rig.host.takeWritten();
    assert.ok(toHost !== undefined);
    const hostInfo = decodeHostFrame(toHost);
    assert.equal(hostInfo.ttl, 63);
    assert.equal(ipv6ToString(toHost.subarray(hostInfo.dst6Offset, hostInfo.dst6Offset + 16)), 'fd00:10:96::a');
    assert.equal(rig.datapath.localUdpPassed, 1);

    // Another port, or another address (one byte off, last and first): never offered.
    const before = answerer6.seen.length;
    await rig.send(rig.podA, query6(DNS_IP6, 5353, payload));
    await rig.send(rig.podA, query6(v6('fd00:10:96::b'), 53, payload));
    await rig.send(rig.podA, query6(v6('fc00:10:96::a'), 53, payload));
    assert.equal(answerer6.seen.length, before);
    assert.equal(rig.host.takeWritten().length, 3);
    // The IPv4 service is a separate one: an IPv4 datagram to an address the IPv6 one has none of.
    await rig.send(rig.podA, query(DNS_IP, 53, payload));
    assert.equal(rig.host.takeWritten().length, 1);

    // Removed: everything goes to the host again.
    rig.datapath.setLocalUdpService6([], 53, null);
    await rig.send(rig.podA, query6(DNS_IP6, 53, payload));
    assert.equal(rig.host.takeWritten().length, 1);
    assert.equal(rig.podA.takeWritten().length, 0);
  } finally {
    rig.close();
  }
});

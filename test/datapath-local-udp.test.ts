// The data path's local UDP service (the cluster DNS server's fast path): a pod's
// datagram to one of its addresses and its port is answered in place, back out the
// pod's own port, with both checksums right; what the answerer passes on, and every
// other address or port, takes the ordinary route to the host TUN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyChecksums } from '../src/wire/verify.ts';
import { GATEWAY_MAC, MAC_A, POD_A, Rig, decodePodFrame, ip, pattern, withVnet, readVnet } from './helpers/datapath.ts';

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

// Packet-trace tests of the service proxy on the datapath's underlay side: a node port
// on this node's address reached from another node (its stack, or one of its pods), with
// the endpoint on that other node. The reply comes back over VXLAN, is reverse NATed
// here, and must go back to the client's node over the overlay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpFlags, buildPacket, verifyChecksums, LinkType } from '../src/wire/index.ts';
import { ServiceNat } from '../src/services/nat.ts';
import { endpoint, servicePort, snapshot } from '../src/model/synthetic.ts';
import { buildServiceTable } from '../src/tables/service-table.ts';
import { REMOTE_NODE_IP, REMOTE_POD_MAC, GATEWAY_MAC, Rig, UNDERLAY_IP, decode, decodeHostFrame, ip, vxlanPayload, withVnet } from './helpers/datapath.ts';

const ENDPOINT = ip('10.244.2.5');

function rigWithNodePort(): Rig {
  const rig = new Rig();
  const snap = snapshot([servicePort({ name: 'web', clusterIP: '10.96.0.10', port: 80, nodePort: 30080, allEndpoints: [endpoint(ENDPOINT, 8080)] })], [UNDERLAY_IP]);
  rig.datapath.setServiceNat(new ServiceNat(buildServiceTable(snap), { masqueradeIP: UNDERLAY_IP, hairpinIP: ip('10.244.1.1'), seed: 1 }));
  return rig;
}

for (const [who, client] of [['the other node itself', REMOTE_NODE_IP], ['a pod on the other node', ip('10.244.2.9')]] as const) {
  test(`node port from ${who}, endpoint on that node: the reply goes back over the overlay`, async () => {
    const rig = rigWithNodePort();
    try {
      // The SYN was steered into the host port from the underlay interface.
      await rig.send(rig.host, withVnet(buildPacket({ ipv4: { src: client, dst: UNDERLAY_IP, ttl: 64 }, tcp: { srcPort: 40000, dstPort: 30080, seq: 1, ack: 0, flags: TcpFlags.SYN } })));
      const out = rig.underlay.sent.splice(0);
      assert.equal(out.length, 1);
      assert.equal(out[0]!.dst, REMOTE_NODE_IP);
      const syn = decode(out[0]!.bytes, 8, out[0]!.bytes.length - 8, LinkType.ETHERNET);
      assert.deepEqual([syn.src4 >>> 0, syn.srcPort, syn.dst4 >>> 0, syn.dstPort], [UNDERLAY_IP, 40000, ENDPOINT, 8080], 'DNAT to the endpoint, masqueraded (externalTrafficPolicy Cluster)');
      // The endpoint's SYN-ACK to the masquerade address, over VXLAN from its node.
      rig.receiveUnderlay(vxlanPayload({
        eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC },
        ipv4: { src: ENDPOINT, dst: UNDERLAY_IP, ttl: 63 },
        tcp: { srcPort: 8080, dstPort: 40000, seq: 100, ack: 2, flags: TcpFlags.SYN | TcpFlags.ACK },
      }));
      assert.equal(rig.host.takeWritten().length, 0, 'not for this node\'s stack');
      const back = rig.underlay.sent.splice(0);
      assert.equal(back.length, 1, `reverse-NATed reply sent back to ${who}; underlay drops: ${JSON.stringify(rig.datapath.underlayCounters.toJSON().drops)}`);
      assert.equal(back[0]!.dst, REMOTE_NODE_IP);
      const b = back[0]!.bytes;
      assert.equal(b[0], 0x08, 'VXLAN I flag');
      const reply = decode(b, 8, b.length - 8, LinkType.ETHERNET);
      assert.deepEqual([reply.src4 >>> 0, reply.srcPort, reply.dst4 >>> 0, reply.dstPort], [UNDERLAY_IP, 30080, client, 40000]);
      assert.equal(reply.ttl, 62);
      assert.equal(verifyChecksums(reply, b), true);
    } finally {
      rig.close();
    }
  });
}

test('a reverse-NATed reply for a client beyond the cluster still goes to the host port', async () => {
  const rig = rigWithNodePort();
  const client = ip('172.30.0.100');
  try {
    await rig.send(rig.host, withVnet(buildPacket({ ipv4: { src: client, dst: UNDERLAY_IP, ttl: 64 }, tcp: { srcPort: 40000, dstPort: 30080, seq: 1, ack: 0, flags: TcpFlags.SYN } })));
    rig.underlay.sent.splice(0);
    rig.receiveUnderlay(vxlanPayload({
      eth: { dst: GATEWAY_MAC, src: REMOTE_POD_MAC },
      ipv4: { src: ENDPOINT, dst: UNDERLAY_IP, ttl: 63 },
      tcp: { srcPort: 8080, dstPort: 40000, seq: 100, ack: 2, flags: TcpFlags.SYN | TcpFlags.ACK },
    }));
    assert.equal(rig.underlay.sent.length, 0);
    const host = rig.host.takeWritten();
    assert.equal(host.length, 1);
    const reply = decodeHostFrame(host[0]!);
    assert.deepEqual([reply.src4 >>> 0, reply.srcPort, reply.dst4 >>> 0, reply.dstPort], [UNDERLAY_IP, 30080, client, 40000]);
  } finally {
    rig.close();
  }
});

test('conntrack clean-up runs on the packets\' own clock: a live service flow survives every sweep', async () => {
  const rig = rigWithNodePort();
  try {
    await rig.send(rig.host, withVnet(buildPacket({ ipv4: { src: ip('203.0.113.9'), dst: UNDERLAY_IP, ttl: 64 }, tcp: { srcPort: 40000, dstPort: 30080, seq: 1, ack: 0, flags: TcpFlags.SYN } })));
    const ct = rig.datapath.serviceNat!.conntrack;
    assert.equal(ct.size, 1);
    // Full sweeps of the table: a flow that just started is far from its timeout.
    for (let i = 0; i < 3; i++) assert.equal(rig.datapath.expireServiceFlows(ct.capacity), 0);
    assert.equal(ct.size, 1, 'the flow outlives the clean-up');
  } finally {
    rig.close();
  }
});

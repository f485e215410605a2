// explainRoute (src/datapath/forwarding.ts), the route `tapir trace` reports, against
// the datapath's own routing: each packet goes through a Datapath with fake devices,
// and the port it came out of (or the drop counter it landed in) must be the one
// explainRoute names for its destination.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DatapathDrop, dropNames } from '../src/datapath/counters.ts';
import { explainRoute, RouteFrom, type Route } from '../src/datapath/forwarding.ts';
import {
  GATEWAY, GATEWAY_MAC, HOST_DST, MAC_A, POD_A, POD_B, REMOTE_NODE_IP, REMOTE_POD, Rig, UNDERLAY_IP, ip, pattern, withVnet,
} from './helpers/datapath.ts';

/** Where the one packet just sent went: a port index, 'underlay' with its destination, or a drop reason. */
function observed(rig: Rig, inPort: number): { port: number } | { underlay: number } | { drop: string } | { nothing: true } {
  const pods = [[rig.portA, rig.podA], [rig.portB, rig.podB], [rig.hostPort, rig.host]] as const;
  for (const [index, device] of pods) {
    if (device.takeWritten().length > 0) return { port: index };
  }
  const sent = rig.underlay.sent.splice(0);
  if (sent.length > 0) return { underlay: sent[0]!.dst };
  const drops = Object.keys(rig.counters(inPort).drops);
  if (drops.length > 0) return { drop: drops.join(',') };
  return { nothing: true };
}

/** What explainRoute predicts, in the same terms as observed(). */
function predicted(rig: Rig, route: Route): ReturnType<typeof observed> {
  switch (route.kind) {
    case 'pod': return { port: route.port };
    case 'host-tun': return { port: rig.hostPort };
    case 'remote-node': return { underlay: rig.datapath.table.nodeUnderlay[route.node]! };
    case 'drop': return { drop: dropNames[route.reason]! };
    case 'gateway': return { port: rig.portA }; // the echo reply goes back to the asking pod
  }
}

const fromPod = (dst: number) => withVnet({
  eth: { dst: GATEWAY_MAC, src: MAC_A },
  ipv4: { src: POD_A, dst, ttl: 64, dontFragment: true },
  udp: { srcPort: 33333, dstPort: 53 },
  payload: pattern(64),
});

const fromHost = (dst: number) => withVnet({
  ipv4: { src: UNDERLAY_IP, dst, ttl: 64, dontFragment: true },
  udp: { srcPort: 33333, dstPort: 53 },
  payload: pattern(64),
});

const cases: { name: string; from: RouteFrom; dst: number; kind: Route['kind'] }[] = [
  { name: 'pod to a local pod', from: RouteFrom.POD, dst: POD_B, kind: 'pod' },
  { name: 'pod to a pod on the remote node (VXLAN)', from: RouteFrom.POD, dst: REMOTE_POD, kind: 'remote-node' },
  { name: 'pod to the remote node itself (VXLAN)', from: RouteFrom.POD, dst: REMOTE_NODE_IP, kind: 'remote-node' },
  { name: 'pod to this node (host TUN)', from: RouteFrom.POD, dst: UNDERLAY_IP, kind: 'host-tun' },
  { name: 'pod to beyond the node (host TUN)', from: RouteFrom.POD, dst: HOST_DST, kind: 'host-tun' },
  { name: 'pod to an unused pod address (no such pod)', from: RouteFrom.POD, dst: ip('10.244.1.99'), kind: 'drop' },
  { name: 'host to a local pod', from: RouteFrom.HOST_TUN, dst: POD_A, kind: 'pod' },
  { name: 'host to a remote pod (VXLAN)', from: RouteFrom.HOST_TUN, dst: REMOTE_POD, kind: 'remote-node' },
  { name: 'host to an unused pod address (no such pod)', from: RouteFrom.HOST_TUN, dst: ip('10.244.1.99'), kind: 'drop' },
  { name: 'host to beyond the node (no route)', from: RouteFrom.HOST_TUN, dst: HOST_DST, kind: 'drop' },
];

for (const c of cases) {
  test(`explainRoute names the datapath's choice: ${c.name}`, async () => {
    const rig = new Rig();
    try {
      const route = explainRoute(rig.datapath.table, c.dst, c.from);
      assert.equal(route.kind, c.kind);
      const inPort = c.from === RouteFrom.POD ? rig.portA : rig.hostPort;
      await rig.send(c.from === RouteFrom.POD ? rig.podA : rig.host, c.from === RouteFrom.POD ? fromPod(c.dst) : fromHost(c.dst));
      assert.deepEqual(observed(rig, inPort), predicted(rig, route));
    } finally {
      rig.close();
    }
  });
}

test('explainRoute: the drop reasons are the counters the datapath uses', () => {
  const rig = new Rig();
  try {
    assert.deepEqual(explainRoute(rig.datapath.table, ip('10.244.1.99')), { kind: 'drop', reason: DatapathDrop.NO_SUCH_POD });
    assert.deepEqual(explainRoute(rig.datapath.table, HOST_DST, RouteFrom.HOST_TUN), { kind: 'drop', reason: DatapathDrop.NO_ROUTE });
    assert.deepEqual(explainRoute(rig.datapath.table, REMOTE_POD), { kind: 'remote-node', node: 0 });
    assert.equal(rig.datapath.table.nodeUnderlay[0], REMOTE_NODE_IP);
    assert.deepEqual(explainRoute(rig.datapath.table, GATEWAY), { kind: 'gateway' });
  } finally {
    rig.close();
  }
});

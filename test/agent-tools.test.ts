// The agent's operator tools (src/agent/tools.ts) through their narrow ToolsHost, over a
// Datapath with fake devices: no agent, no devices, no root. The trace's egress line is
// explainRoute of the packet as the service NAT left it (afterDst).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentTools, type ToolsHost } from '../src/agent/tools.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';
import { endpoint, servicePort, snapshot } from '../src/model/synthetic.ts';
import { GATEWAY, HOST_DST, POD_A, REMOTE_POD, Rig, UNDERLAY_IP } from './helpers/datapath.ts';
import { ipv4ToString } from '../src/wire/address.ts';

function tools(rig: Rig, snap: ServiceSnapshot | null): AgentTools {
  const host: ToolsHost = {
    datapath: rig.datapath,
    hostTun: 'tapir0',
    masqueradeIP: UNDERLAY_IP,
    hairpinIP: GATEWAY,
    portIndex: (name) => rig.datapath.ports.findIndex((p) => p?.name === name),
    podOnPort: (index) => (index === rig.portB ? 'default/b' : ''),
    serviceSnapshot: () => snap,
  };
  return new AgentTools(host);
}

const q = ipv4ToString;

test('trace: the egress is the route of the packet after NAT, in the datapath terms', () => {
  const rig = new Rig();
  const web = servicePort({ name: 'web', clusterIP: '10.96.0.10', port: 80, allEndpoints: [endpoint(REMOTE_POD, 8080, { nodeName: 'node-2' })] });
  try {
    const t = tools(rig, snapshot([web]));
    const trace = (src: number, dst: number, dstPort: number, from: 'pod' | 'host' | 'external') =>
      t.trace({ op: 'trace', protocol: 6, src: q(src), srcPort: 40000, dst: q(dst), dstPort, from });

    const toService = trace(POD_A, 0x0a60000a, 80, 'pod');
    assert.equal(toService.verdict, 'nated');
    assert.equal(toService.afterDst, REMOTE_POD);
    assert.equal(toService.egress, 'VXLAN (VNI 4242) to node-2 at 172.30.0.12');
    assert.equal(toService.steps.at(-1), 'egress: VXLAN (VNI 4242) to node-2 at 172.30.0.12');

    assert.equal(trace(POD_A, rig.datapath.table.pods[1]!.ip, 80, 'pod').egress, 'pod port pod-b (default/b)');
    assert.equal(trace(POD_A, HOST_DST, 80, 'pod').egress, "host TUN tapir0 (the node's own stack, which routes it on)");
    assert.equal(trace(UNDERLAY_IP, HOST_DST, 80, 'host').egress, "dropped: no route to 192.168.50.7 (not a pod or node address, and it came from the node's own stack)");
    assert.equal(trace(POD_A, 0x0af40163, 80, 'pod').egress, 'dropped: no pod has 10.244.1.99 on this node');
    assert.equal(trace(POD_A, 0x0a60000a, 81, 'pod').egress, 'none: the packet does not leave (see the verdict)');
  } finally {
    rig.close();
  }
});

test('stats lists every port and the underlay; captures need a known port', () => {
  const rig = new Rig();
  try {
    const t = tools(rig, null);
    const s = t.stats();
    assert.deepEqual(s.ports.map((p) => [p.name, p.kind]), [['pod-a', 'pod'], ['pod-b', 'pod'], ['host', 'host'], ['underlay', 'underlay']]);
    assert.equal(s.coalescedSegments, 0);
    assert.throws(() => t.captureStart('nope', '/tmp/x.pcap'), /no port 'nope'/);
    assert.throws(() => t.captureStop('pod-a'), /no capture of pod-a/);
  } finally {
    rig.close();
  }
});

// The cluster DNS addresses' port 53 belongs to the node's DNS server, not to a Service.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withoutClusterDns } from '../src/agent/service-sync.ts';
import { scaleSnapshot } from '../src/model/synthetic.ts';
import { ipv4 } from '../src/wire/address.ts';

test('withoutClusterDns drops port 53 on the cluster DNS addresses and keeps everything else', () => {
  const base = scaleSnapshot(3);
  const dnsIP = ipv4('10.96.0.10');
  const proto = base.ports[0]!;
  const kubeDns = [
    { ...proto, key: 'kube-system/kube-dns:dns', namespace: 'kube-system', name: 'kube-dns', portName: 'dns', protocol: 17 as const, clusterIP: dnsIP, port: 53 },
    { ...proto, key: 'kube-system/kube-dns:dns-tcp', namespace: 'kube-system', name: 'kube-dns', portName: 'dns-tcp', protocol: 6 as const, clusterIP: dnsIP, port: 53 },
    { ...proto, key: 'kube-system/kube-dns:metrics', namespace: 'kube-system', name: 'kube-dns', portName: 'metrics', protocol: 6 as const, clusterIP: dnsIP, port: 9153 },
  ];
  const snapshot = { ...base, ports: [...base.ports, ...kubeDns] };
  const out = withoutClusterDns(snapshot, [dnsIP]);
  assert.deepEqual(out.ports.map((p) => p.key), [...base.ports.map((p) => p.key), 'kube-system/kube-dns:metrics']);
  assert.equal(out.generation, snapshot.generation);
  // Another address's port 53 is a Service like any other; nothing to drop returns the same object.
  assert.equal(withoutClusterDns(snapshot, [ipv4('10.96.0.53')]), snapshot);
});

// The agent's cluster DNS server: its addresses belong to it, not to a Service, and its Corefile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentCorefile } from '../src/agent/cluster-dns.ts';
import { withoutClusterDns } from '../src/agent/service-sync.ts';
import { TapirError } from '../src/errors/tapir-error.ts';
import { scaleSnapshot } from '../src/model/synthetic.ts';
import { ipv4 } from '../src/wire/address.ts';

test('withoutClusterDns drops every port on the cluster DNS addresses and keeps everything else', () => {
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
  assert.deepEqual(out.ports.map((p) => p.key), base.ports.map((p) => p.key));
  assert.equal(out.generation, snapshot.generation);
  // Another address is a Service like any other; nothing to drop returns the same object.
  assert.equal(withoutClusterDns(snapshot, [ipv4('10.96.0.53')]), snapshot);
});

test('the agent reads its Corefile: kubeadm\'s built in, a file that keeps its meaning, and a plugin Tapir lacks refused with its line', () => {
  const builtIn = agentCorefile({ clusterDNS: [], clusterDNS6: [], corefile: null, nodeAddress: true });
  assert.equal(builtIn.servers.length, 1);
  assert.deepEqual(builtIn.servers[0]!.kubernetes?.zones, ['cluster.local', 'in-addr.arpa', 'ip6.arpa']);
  const dir = mkdtempSync(join(tmpdir(), 'tapir-corefile-'));
  try {
    const file = join(dir, 'Corefile');
    writeFileSync(file, '.:53 {\n    errors\n    kubernetes cluster.local {\n        ttl 7\n    }\n    cache 30\n}\n');
    assert.equal(agentCorefile({ clusterDNS: [], clusterDNS6: [], corefile: file, nodeAddress: true }).servers[0]!.kubernetes?.ttl, 7);
    writeFileSync(file, '.:53 {\n    errors\n    kubernetes cluster.local\n    rewrite name foo bar\n}\n');
    assert.throws(() => agentCorefile({ clusterDNS: [], clusterDNS6: [], corefile: file, nodeAddress: true }),
      (e: unknown) => e instanceof TapirError && e.code === 'DNS_COREFILE' && e.message.includes(`${file}:4:`) && e.message.includes('rewrite'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

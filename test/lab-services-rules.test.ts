// The lab's kernel proxy modes: kube-proxy-style iptables and nftables rules generated
// from one fixed compiled ServiceSnapshot. Golden files pin the output
// (UPDATE_GOLDEN=1 rewrites them); chain names are checked against kube-proxy's own
// test expectations; and both rule sets must load into a real kernel (a scratch netns).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EndpointSpec, ServicePortSpec, ServiceSnapshot } from '../src/model/service-snapshot.ts';
import { iptablesRules } from '../src/kernel-proxy/iptables/rules.ts';
import { nftablesRules } from '../src/kernel-proxy/nftables/rules.ts';
import { hashName, planPort, probability } from '../src/kernel-proxy/proxy-plan.ts';
import { Netns } from './helpers/netns.ts';
import { parseIpv4 } from '../src/wire/address.ts';

const GOLDEN = join(new URL('.', import.meta.url).pathname, 'fixtures/lab-rules');
const NODE = { clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/16' };

const ip = (text: string): number => parseIpv4(text)!;

function endpoint(address: string, port: number, node: string, extra: Partial<EndpointSpec> = {}): EndpointSpec {
  return { ip: ip(address), port, nodeName: node, local: node === 'node-1', zone: node === 'node-1' ? 'zone-a' : 'zone-b', ready: true, serving: true, terminating: false, ...extra };
}

function port(name: string, extra: Partial<ServicePortSpec>): ServicePortSpec {
  const [namespace, rest] = name.split('/') as [string, string];
  const [svc, portName = ''] = rest.split(':') as [string, string?];
  const all = extra.allEndpoints ?? [];
  return {
    key: name, namespace, name: svc, portName, protocol: 6, clusterIP: 0, port: 80, nodePort: 0,
    externalIPs: [], loadBalancerIPs: [], loadBalancerSourceRanges: [], affinityTimeoutSeconds: 0, lb: 'random',
    externalLocal: false, internalLocal: false, healthCheckNodePort: 0,
    allEndpoints: all, clusterEndpoints: all, externalEndpoints: all, localReadyEndpoints: all.filter((e) => e.local && e.ready).length,
    ...extra,
  };
}

const web = [endpoint('10.244.1.2', 8080, 'node-1'), endpoint('10.244.1.3', 8080, 'node-1'), endpoint('10.244.2.2', 8080, 'node-2')];
const remoteOnly = [endpoint('10.244.2.3', 8080, 'node-2')];

/** node-1's view of the default lab's demo services plus the corner cases. */
export const SNAPSHOT: ServiceSnapshot = {
  generation: 7,
  nodePortAddresses: [ip('172.30.0.11')],
  ports: [
    port('default/web:http', { clusterIP: ip('10.96.0.100'), allEndpoints: web, clusterEndpoints: web, externalEndpoints: web }),
    port('default/web-nodeport:http', { clusterIP: ip('10.96.0.11'), nodePort: 30080, allEndpoints: web, clusterEndpoints: web, externalEndpoints: web }),
    port('default/web-lb:http', {
      clusterIP: ip('10.96.0.12'), nodePort: 30081, loadBalancerIPs: [ip('172.30.0.200')], loadBalancerSourceRanges: [[ip('172.30.0.0'), 24]],
      allEndpoints: web, clusterEndpoints: web, externalEndpoints: web,
    }),
    port('default/web-local:http', {
      clusterIP: ip('10.96.0.13'), nodePort: 30082, loadBalancerIPs: [ip('172.30.0.201')], externalLocal: true, healthCheckNodePort: 32000,
      allEndpoints: web, clusterEndpoints: web, externalEndpoints: web.filter((e) => e.local),
    }),
    port('default/remote-local', {
      clusterIP: ip('10.96.0.14'), nodePort: 30083, externalLocal: true, healthCheckNodePort: 32001,
      allEndpoints: remoteOnly, clusterEndpoints: remoteOnly, externalEndpoints: [],
    }),
    port('default/web-ext:http', { clusterIP: ip('10.96.0.15'), externalIPs: [ip('172.30.0.150')], allEndpoints: web, clusterEndpoints: web, externalEndpoints: web }),
    port('default/web-affinity:http', { clusterIP: ip('10.96.0.16'), affinityTimeoutSeconds: 10800, allEndpoints: web, clusterEndpoints: web, externalEndpoints: web }),
    port('default/echo-udp:udp', { protocol: 17, clusterIP: ip('10.96.0.17'), port: 9000, allEndpoints: web.map((e) => ({ ...e, port: 9000 })), clusterEndpoints: web.map((e) => ({ ...e, port: 9000 })), externalEndpoints: web.map((e) => ({ ...e, port: 9000 })) }),
    port('default/empty:http', { clusterIP: ip('10.96.0.18'), nodePort: 30084, externalIPs: [ip('172.30.0.151')] }),
    port('default/internal-local:http', {
      clusterIP: ip('10.96.0.19'), internalLocal: true, allEndpoints: web, clusterEndpoints: web.filter((e) => e.local), externalEndpoints: web,
    }),
    port('default/headless:http', { clusterIP: 0, allEndpoints: web }),
  ],
};

function golden(name: string, actual: string): void {
  const path = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(path)) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(path, actual);
    if (process.env.UPDATE_GOLDEN !== '1') assert.fail(`${path} did not exist; written now, check it and run again`);
  }
  assert.equal(actual, readFileSync(path, 'utf8'), `${name} differs (UPDATE_GOLDEN=1 rewrites it after review)`);
}

test('chain names are kube-proxy\'s own hashes (values from pkg/proxy tests)', () => {
  // TestOverallIPTablesRules / TestOverallNFTablesRules: ns1/svc1:p80, endpoint 10.180.0.1:80.
  assert.equal(hashName('ns1/svc1:p80tcp', 16), 'XPGD46QRK7WJZT7O');
  assert.equal(hashName('ns1/svc1:p80tcp10.180.0.1:80', 16), 'SXIVWICOYRO3J4NJ');
  const planned = planPort({ ...port('ns1/svc1:p80', { clusterIP: ip('172.30.0.41') }), allEndpoints: [endpoint('10.180.0.1', 80, 'x')], clusterEndpoints: [endpoint('10.180.0.1', 80, 'x')] });
  assert.equal(planned.names.svc, 'KUBE-SVC-XPGD46QRK7WJZT7O');
  assert.equal(planned.names.nftService, 'service-ULMVA6XW-ns1/svc1/tcp/p80');
  assert.equal(planned.clusterEndpoints[0]!.sepChain, 'KUBE-SEP-SXIVWICOYRO3J4NJ');
  assert.equal(planned.clusterEndpoints[0]!.nftEndpointChain, 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
  assert.deepEqual([0, 1, 2].map((i) => probability(i, 3)), ['0.3333333333', '0.5000000000', '1.0000000000']);
});

test('iptables rules for the fixed snapshot match the golden file', () => {
  golden('iptables.golden', iptablesRules(SNAPSHOT, NODE));
});

test('nftables rules for the fixed snapshot match the golden file', () => {
  golden('nftables.golden', nftablesRules(SNAPSHOT, NODE));
});

test('an empty snapshot still yields the base chains (so a sync removes every service)', () => {
  const empty: ServiceSnapshot = { generation: 1, ports: [], nodePortAddresses: [] };
  const ipt = iptablesRules(empty, NODE);
  assert.match(ipt, /^\*filter\n/);
  assert.ok(!ipt.includes('KUBE-SVC-'));
  assert.match(ipt, /-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING/);
  const nft = nftablesRules(empty, NODE);
  assert.ok(nft.startsWith('add table ip kube-proxy { comment "rules for kube-proxy" ; }\ndelete table ip kube-proxy\n'));
  assert.ok(!/chain ip kube-proxy (service|endpoint)-[A-Z2-7]{8}-/.test(nft), 'no per-service chains');
});

test('the kernel accepts both rule sets, and a second load replaces the first', () => {
  using ns = new Netns('rules');
  const ipt = iptablesRules(SNAPSHOT, NODE);
  ns.exec('iptables-restore', [], { input: ipt });
  const saved = ns.exec('iptables-save', ['-t', 'nat']);
  assert.match(saved, /-A KUBE-SVC-\w+ -m comment --comment "default\/web:http -> 10\.244\.1\.2:8080" -m statistic --mode random --probability 0\.33333333349 -j KUBE-SEP-/);
  assert.match(saved, /-m recent --set --name KUBE-SEP-\w+ --mask 255\.255\.255\.255 --rsource -m tcp -j DNAT --to-destination 10\.244\.1\.2:8080/);
  // Restoring a smaller set removes the chains of services that went away.
  const smaller: ServiceSnapshot = { ...SNAPSHOT, ports: SNAPSHOT.ports.slice(0, 1) };
  ns.exec('iptables-restore', [], { input: iptablesRules(smaller, NODE) });
  assert.equal((ns.exec('iptables-save', ['-t', 'nat']).match(/^:KUBE-SVC-/gm) ?? []).length, 1);

  ns.exec('nft', ['-f', '-'], { input: nftablesRules(SNAPSHOT, NODE) });
  const listed = ns.exec('nft', ['list', 'table', 'ip', 'kube-proxy']);
  assert.match(listed, /numgen random mod 3 vmap \{ 0 : goto endpoint-\w+-default\/web\/tcp\/http__10\.244\.1\.2\/8080/);
  assert.match(listed, /set affinity-\w+-default\/web-affinity\/tcp\/http__10\.244\.1\.2\/8080 \{/);
  ns.exec('nft', ['-f', '-'], { input: nftablesRules(smaller, NODE) });
  assert.equal((ns.exec('nft', ['list', 'table', 'ip', 'kube-proxy']).match(/chain service-[A-Z2-7]{8}-/g) ?? []).length, 1);
});

// Compiled service tables from a ServiceSnapshot: frontends by kind, node ports on
// nodePortAddresses only, endpoint ranges, shared lists, source ranges, problems.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrontendKind, NODE_PORT_ADDR } from '../src/tables/service-frontends.ts';
import { PortFlag, buildServiceTable } from '../src/tables/service-table.ts';
import { endpoint, ip, scaleSnapshot, servicePort, snapshot } from '../src/model/synthetic.ts';

const eps = [endpoint('10.244.1.5', 8080, { local: true }), endpoint('10.244.2.5', 8080)];

test('frontends: cluster IP, external IPs, load-balancer IPs and node ports, each with its kind', () => {
  const t = buildServiceTable(snapshot([
    servicePort({ name: 'web', clusterIP: '10.96.0.10', port: 80, nodePort: 30080, externalIPs: ['198.51.100.30'], loadBalancerIPs: ['198.51.100.20'], allEndpoints: eps }),
    servicePort({ name: 'dns', protocol: 17, clusterIP: '10.96.0.10', port: 53, allEndpoints: eps }),
  ], ['192.168.1.10']));
  assert.equal(t.frontend(ip('10.96.0.10'), 6, 80), 0 * 4 + FrontendKind.CLUSTER_IP);
  assert.equal(t.frontend(ip('10.96.0.10'), 17, 53), 1 * 4 + FrontendKind.CLUSTER_IP);
  assert.equal(t.frontend(ip('10.96.0.10'), 17, 80), -1, 'protocol is part of the key');
  assert.equal(t.frontend(ip('198.51.100.30') | 0, 6, 80), FrontendKind.EXTERNAL_IP, 'int32 form of the address');
  assert.equal(t.frontend(ip('198.51.100.20'), 6, 80), FrontendKind.LOAD_BALANCER);
  assert.equal(t.frontend(NODE_PORT_ADDR, 6, 30080), FrontendKind.NODE_PORT);
  assert.equal(t.nodePortAddresses.get(ip('192.168.1.10')), 0);
  assert.equal(t.nodePortAddresses.get(ip('192.168.1.11')), -1);
  assert.equal(t.clusterIPs.get(ip('10.96.0.10')), 0);
  assert.ok(t.frontendIPs.get(ip('198.51.100.20')) >= 0);
  assert.equal(t.frontendIPs.get(ip('192.168.1.10')), -1, 'node addresses are not frontend IPs');
  assert.deepEqual(t.problems, []);
  assert.equal(t.byKey.get('default/dns:'), 1);
});

test('endpoint lists: ranges of the flat arrays, shared when equal, separate when a Local policy filters', () => {
  const t = buildServiceTable(snapshot([
    servicePort({ name: 'a', clusterIP: '10.96.0.1', allEndpoints: eps }),
    servicePort({ name: 'b', clusterIP: '10.96.0.2', allEndpoints: eps, externalLocal: true, lb: 'maglev' }),
  ]));
  assert.equal(t.externalStart[0], t.clusterStart[0]);
  assert.equal(t.externalCount[0], 2);
  assert.notEqual(t.externalStart[1], t.clusterStart[1]);
  assert.equal(t.externalCount[1], 1);
  assert.equal(t.endpointIP[t.externalStart[1]!], ip('10.244.1.5'));
  assert.equal(t.endpointLocal[t.externalStart[1]!], 1);
  assert.equal(t.endpointIP.length, 5);
  assert.equal(t.flags[1]! & (PortFlag.EXTERNAL_LOCAL | PortFlag.MAGLEV), PortFlag.EXTERNAL_LOCAL | PortFlag.MAGLEV);
  assert.equal(t.clusterMaglev[0], -1);
  assert.equal(t.clusterMaglevSize[1], 1021);
  assert.equal(t.externalMaglevSize[1], 1021);
  assert.notEqual(t.externalMaglev[1], t.clusterMaglev[1]);
  assert.equal(t.maglev.length, 2042);
});

test('load-balancer source ranges become masks; no endpoints clears HAS_ENDPOINTS', () => {
  const t = buildServiceTable(snapshot([
    servicePort({ clusterIP: '10.96.0.1', loadBalancerIPs: ['198.51.100.20'], loadBalancerSourceRanges: ['203.0.113.77/24', '0.0.0.0/0', '192.168.1.10/32'] }),
  ]));
  assert.equal(t.flags[0]! & PortFlag.HAS_ENDPOINTS, 0);
  assert.equal(t.rangeCount[0], 3);
  assert.deepEqual([...t.rangeNet].map((n) => n >>> 0), [ip('203.0.113.0'), 0, ip('192.168.1.10')]);
  assert.deepEqual([...t.rangeMask].map((n) => n >>> 0), [0xffffff00, 0, 0xffffffff]);
});

test('headless ports get no frontends; a frontend claimed twice and other protocols are reported', () => {
  const t = buildServiceTable(snapshot([
    servicePort({ name: 'headless', clusterIP: 0, allEndpoints: eps }),
    servicePort({ name: 'one', clusterIP: '10.96.0.9', allEndpoints: eps }),
    servicePort({ name: 'two', clusterIP: '10.96.0.9', allEndpoints: eps }),
    servicePort({ name: 'sctp', protocol: 132 as 6, clusterIP: '10.96.0.8', allEndpoints: eps }),
  ]));
  assert.equal(t.frontends.size, 1);
  assert.equal(t.frontend(ip('10.96.0.9'), 6, 80), 1 * 4);
  assert.deepEqual(t.problems, [
    'service port default/two:: 10.96.0.9:80/TCP is already default/one:\'s; ignored',
    'service port default/sctp:: protocol 132 is not served (TCP and UDP only)',
  ]);
});

test('10,000 services build into tables of the expected size (timing: bench/services.ts)', () => {
  const t = buildServiceTable(scaleSnapshot(10000, { maglevEvery: 10, nodePortEvery: 4 }));
  assert.equal(t.count, 10000);
  assert.equal(t.frontends.size, 10000 + 2500);
  assert.equal(t.endpointIP.length, 30000);
  assert.equal(t.maglev.length, 1000 * 1021);
  assert.equal(t.frontend(ip('10.96.0.1') + 9999, 6, 80), 9999 * 4);
});

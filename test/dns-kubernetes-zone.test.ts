// The kubernetes zone (src/dns/kubernetes-zone.ts): every record of the Kubernetes DNS
// specification 1.1.0 and CoreDNS's pod records, NXDOMAIN against NODATA, the SOA of
// negative answers, case, EDNS, truncation and fallthrough. Each response is decoded by
// dns-packet and checked field by field; views come from a builder with the shapes
// src/control/service-view.ts produces, and once from manifests through the real
// ServiceController; dig and kdig ask the zone over UDP and TCP on 127.0.0.1.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import * as dnsPacket from 'dns-packet';
import { KubernetesZone, KubernetesZoneError, NOT_HANDLED, type KubernetesZoneOptions } from '../src/dns/kubernetes-zone.ts';
import { errorResponse, newQueryInfo, readQuery, type QueryInfo } from '../src/dns/message.ts';
import { ServiceController } from '../src/control/service-controller.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import type { ClusterView, EndpointView, EndpointView6, ServiceView } from '../src/model/cluster-view.ts';
import { L4Protocol } from '../src/model/service-snapshot.ts';
import { ipv4, ipv6ToString, parseCidr, parseIpv6 } from '../src/wire/address.ts';
import { seededRandom as prng } from './helpers/random.ts';

type Decoded = dnsPacket.DecodedPacket & { rcode: string };
type Rr = { type: string; name: string; ttl: number; class: string; data: unknown };

// ---- views with the shapes src/control/service-view.ts produces ----

const frozen = <T>(value: T): T => Object.freeze(value) as T;
const ANY = 'ANY' as dnsPacket.RecordType;

interface Ep { ip: string; hostname?: string; ready?: boolean; ports?: { name: string; port: number; protocol?: number }[] }
interface Svc {
  ns?: string; name: string; type?: ServiceView['type']; clusterIP?: string; clusterIP6?: string; headless?: boolean; externalName?: string;
  ports?: { name: string; port: number; protocol?: number }[]; endpoints?: Ep[]; publishNotReadyAddresses?: boolean;
}

function service(s: Svc): ServiceView {
  const namespace = s.ns ?? 'default';
  const ports = (s.ports ?? []).map((p) => frozen({ name: p.name, protocol: (p.protocol ?? L4Protocol.TCP) as L4Protocol, port: p.port, targetPort: p.port, nodePort: 0 }));
  const endpoints: EndpointView[] = (s.endpoints ?? []).filter((e) => !e.ip.includes(':')).map((e) => frozen({
    ip: ipv4(e.ip), hostname: e.hostname ?? '', nodeName: 'node-1', zone: '', ready: e.ready ?? true, serving: e.ready ?? true, terminating: false,
    ports: frozen((e.ports ?? s.ports ?? []).map((p) => frozen({ name: p.name, protocol: (p.protocol ?? L4Protocol.TCP) as L4Protocol, port: p.port }))),
  })).sort((a, b) => a.ip - b.ip);
  // IPv6 endpoints as service-view.ts gives them: RFC 5952 text, in address order.
  const endpoints6: EndpointView6[] = (s.endpoints ?? []).filter((e) => e.ip.includes(':')).map((e) => frozen({
    ip: ipv6ToString(parseIpv6(e.ip)!), hostname: e.hostname ?? '', nodeName: 'node-1', zone: '', ready: e.ready ?? true, serving: e.ready ?? true, terminating: false,
    ports: frozen((e.ports ?? s.ports ?? []).map((p) => frozen({ name: p.name, protocol: (p.protocol ?? L4Protocol.TCP) as L4Protocol, port: p.port }))),
  })).sort((a, b) => Buffer.compare(parseIpv6(a.ip)!, parseIpv6(b.ip)!));
  const type = s.type ?? 'ClusterIP';
  const clusterIPs = [s.clusterIP, s.clusterIP6].filter((ip): ip is string => ip !== undefined);
  return frozen({
    key: `${namespace}/${s.name}`, namespace, name: s.name, type,
    clusterIP: s.clusterIP !== undefined ? ipv4(s.clusterIP) : 0,
    clusterIP6: s.clusterIP6 ?? '', clusterIPs: frozen(clusterIPs),
    ipFamilies: frozen(clusterIPs.map((ip) => (ip.includes(':') ? 'IPv6' as const : 'IPv4' as const))),
    ipFamilyPolicy: clusterIPs.length > 1 ? 'RequireDualStack' as const : 'SingleStack' as const,
    externalIPs6: frozen([]), loadBalancerIngress6: frozen([]), endpoints6: frozen(endpoints6),
    headless: s.headless ?? false,
    externalName: s.externalName ?? '',
    proxied: type !== 'ExternalName' && !(s.headless ?? false),
    ports: frozen(ports), externalIPs: frozen([]), loadBalancerIngress: frozen([]),
    externalTrafficPolicy: '' as const, healthCheckNodePort: 0,
    publishNotReadyAddresses: s.publishNotReadyAddresses ?? false,
    endpoints: frozen(endpoints), problems: frozen([]),
  });
}

function view(services: ServiceView[], generation = 1): ClusterView {
  const sorted = [...services].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return frozen({ generation, nodeName: 'node-1', services: frozen(sorted), snapshot: { generation, nodePortAddresses: [], ports: [] } as unknown as ClusterView['snapshot'] });
}

const KUBEADM: KubernetesZoneOptions = { zones: ['cluster.local', 'in-addr.arpa', 'ip6.arpa'], ttl: 30, pods: 'insecure', fallthrough: ['in-addr.arpa', 'ip6.arpa'] };

const SERVICES: Svc[] = [
  { ns: 'default', name: 'kubernetes', clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443 }], endpoints: [{ ip: '192.168.0.10', ports: [{ name: 'https', port: 6443 }] }] },
  { ns: 'kube-system', name: 'kube-dns', clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: L4Protocol.UDP }, { name: 'dns-tcp', port: 53 }, { name: 'metrics', port: 9153 }] },
  { ns: 'default', name: 'web', clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80 }, { name: '', port: 8081 }], endpoints: [{ ip: '10.244.1.2' }, { ip: '10.244.2.3', ready: false }] },
  {
    ns: 'default', name: 'db', headless: true, ports: [{ name: 'pg', port: 5432 }],
    endpoints: [{ ip: '10.244.1.9', hostname: 'db-0' }, { ip: '10.244.2.9' }, { ip: '10.244.3.9', hostname: 'db-2', ready: false }],
  },
  { ns: 'default', name: 'empty', headless: true, ports: [{ name: 'pg', port: 5432 }], endpoints: [{ ip: '10.244.3.10', ready: false }] },
  { ns: 'default', name: 'peers', headless: true, publishNotReadyAddresses: true, endpoints: [{ ip: '10.244.4.1', ready: false, ports: [] }, { ip: '10.244.4.2', ports: [] }] },
  { ns: 'default', name: 'search', type: 'ExternalName', externalName: 'Search.Example.COM.' },
  { ns: 'default', name: 'numeric', type: 'ExternalName', externalName: '192.0.2.1' },
  { ns: 'apps', name: 'api', clusterIP: '10.96.5.5', ports: [{ name: 'grpc', port: 9000 }, { name: 'metrics', port: 9090, protocol: L4Protocol.UDP }] },
];

function zoneWith(options: KubernetesZoneOptions = KUBEADM, services: Svc[] = SERVICES, generation = 7): KubernetesZone {
  const z = new KubernetesZone(options);
  z.update(view(services.map(service), generation));
  return z;
}

function query(name: string, type: dnsPacket.RecordType = 'A', opts: { edns?: number; dnssecOk?: boolean; cls?: dnsPacket.RecordClass; id?: number } = {}): Buffer {
  return dnsPacket.encode({
    type: 'query', id: opts.id ?? 4242, flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: opts.cls ?? 'IN' }],
    additionals: opts.edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns, flags: opts.dnssecOk ? dnsPacket.DNSSEC_OK : 0 } as unknown as dnsPacket.Answer],
  });
}

const q: QueryInfo = newQueryInfo();
const res = new Uint8Array(65535);

/** Asks the zone; null for NOT_HANDLED. */
function ask(zone: KubernetesZone, name: string, type: dnsPacket.RecordType = 'A', opts: { edns?: number; dnssecOk?: boolean; cls?: dnsPacket.RecordClass; maxSize?: number } = {}): Decoded | null {
  const msg = query(name, type, opts);
  assert.equal(readQuery(msg, msg.length, q), true);
  const maxSize = opts.maxSize ?? (opts.edns !== undefined ? Math.max(512, opts.edns) : 512);
  const n = zone.answer(msg, msg.length, q, res, maxSize);
  if (n === NOT_HANDLED) return null;
  assert.ok(n <= maxSize, `${n} bytes for a ${maxSize}-byte limit`);
  const r = dnsPacket.decode(Buffer.from(res.subarray(0, n))) as Decoded;
  assert.equal(r.id, 4242);
  assert.equal(r.type, 'response');
  assert.equal(r.flag_rd, true);
  assert.equal(r.flag_ra, false, 'CoreDNS does not set RA on its own answers');
  assert.deepEqual(r.questions, [{ name, type, class: opts.cls ?? 'IN' }]);
  return r;
}

const answers = (r: Decoded | null): Rr[] => r!.answers as unknown as Rr[];
const data = (r: Decoded | null): unknown[] => answers(r).map((a) => a.data);

/** NODATA or NXDOMAIN: no answers, AA, the zone's SOA alone in the authority section. */
function assertNegative(r: Decoded | null, rcode: 'NOERROR' | 'NXDOMAIN', zoneName: string, serial = 7, ttl = 30): void {
  assert.ok(r !== null);
  assert.equal(r.rcode, rcode);
  assert.equal(r.flag_aa, true);
  assert.equal(r.answers!.length, 0);
  assert.equal(r.authorities!.length, 1);
  const soa = r.authorities![0] as unknown as Rr;
  assert.equal(soa.type, 'SOA');
  assert.equal(soa.name, zoneName);
  assert.equal(soa.ttl, Math.min(ttl, 300));
  assert.deepEqual(soa.data, { mname: `ns.dns.${zoneName}`, rname: `hostmaster.${zoneName}`, serial, refresh: 7200, retry: 1800, expire: 86400, minimum: ttl });
}

test('the apex, dns-version and the empty non-terminals', () => {
  const z = zoneWith();
  const txt = ask(z, 'dns-version.cluster.local', 'TXT');
  assert.equal(txt!.rcode, 'NOERROR');
  assert.equal(txt!.flag_aa, true);
  assert.deepEqual(answers(txt).map((a) => [a.name, a.type, a.ttl, a.data]), [['dns-version.cluster.local', 'TXT', 28800, [Buffer.from('1.1.0')]]]);
  assertNegative(ask(z, 'dns-version.cluster.local', 'A'), 'NOERROR', 'cluster.local');

  const soa = ask(z, 'cluster.local', 'SOA');
  assert.deepEqual(answers(soa).map((a) => [a.name, a.type, a.ttl]), [['cluster.local', 'SOA', 30]]);
  assert.deepEqual(data(soa), [{ mname: 'ns.dns.cluster.local', rname: 'hostmaster.cluster.local', serial: 7, refresh: 7200, retry: 1800, expire: 86400, minimum: 30 }]);
  assert.equal(soa!.authorities!.length, 0);
  const ns = ask(z, 'cluster.local', 'NS');
  assert.deepEqual(answers(ns).map((a) => [a.name, a.type, a.ttl, a.data]), [['cluster.local', 'NS', 30, 'ns.dns.cluster.local']]);
  assert.deepEqual((ns!.additionals as unknown as Rr[]).map((a) => [a.name, a.type, a.data]), [['ns.dns.cluster.local', 'A', '10.96.0.10']]);
  assert.deepEqual(data(ask(z, 'ns.dns.cluster.local', 'A')), ['10.96.0.10']);
  assertNegative(ask(z, 'cluster.local', 'A'), 'NOERROR', 'cluster.local');
  // The reverse zone's apex is ours too.
  assert.equal(answers(ask(z, 'in-addr.arpa', 'SOA'))[0]!.name, 'in-addr.arpa');
  assert.deepEqual(data(ask(z, 'in-addr.arpa', 'NS')), ['ns.dns.in-addr.arpa']);

  for (const name of ['svc.cluster.local', 'pod.cluster.local', 'default.svc.cluster.local', 'apps.svc.cluster.local', 'kube-system.svc.cluster.local', 'dns.cluster.local']) {
    for (const type of ['A', 'AAAA', 'SRV', 'TXT'] as const) assertNegative(ask(z, name, type), 'NOERROR', 'cluster.local');
  }
  for (const name of ['nope.svc.cluster.local', 'nope.cluster.local', 'web.nope.svc.cluster.local', 'web.default.cluster.local', 'x.web.default.svc.cluster.local', 'a.b.dns-version.cluster.local']) {
    assertNegative(ask(z, name, 'A'), 'NXDOMAIN', 'cluster.local');
  }
});

test('a ClusterIP Service: A, SRV per named port with the target in the additional section, PTR, endpoint names', () => {
  const z = zoneWith();
  const a = ask(z, 'web.default.svc.cluster.local');
  assert.equal(a!.rcode, 'NOERROR');
  assert.equal(a!.flag_aa, true);
  assert.equal(a!.flag_tc, false);
  assert.deepEqual(answers(a).map((r) => [r.name, r.type, r.class, r.ttl, r.data]), [['web.default.svc.cluster.local', 'A', 'IN', 30, '10.96.0.20']]);
  assert.equal(a!.authorities!.length, 0);
  assertNegative(ask(z, 'web.default.svc.cluster.local', 'AAAA'), 'NOERROR', 'cluster.local');
  assertNegative(ask(z, 'web.default.svc.cluster.local', 'CNAME'), 'NOERROR', 'cluster.local');

  const srv = ask(z, '_http._tcp.web.default.svc.cluster.local', 'SRV');
  assert.deepEqual(answers(srv).map((r) => [r.name, r.type, r.ttl, r.data]),
    [['_http._tcp.web.default.svc.cluster.local', 'SRV', 30, { priority: 0, weight: 100, port: 80, target: 'web.default.svc.cluster.local' }]]);
  assert.deepEqual((srv!.additionals as unknown as Rr[]).map((r) => [r.name, r.type, r.data]), [['web.default.svc.cluster.local', 'A', '10.96.0.20']]);
  // The SRV name exists for SRV only; the wrong protocol or an unnamed port is no name.
  assertNegative(ask(z, '_http._tcp.web.default.svc.cluster.local', 'A'), 'NOERROR', 'cluster.local');
  assertNegative(ask(z, '_http._udp.web.default.svc.cluster.local', 'SRV'), 'NXDOMAIN', 'cluster.local');
  assertNegative(ask(z, '_grpc._udp.api.apps.svc.cluster.local', 'SRV'), 'NXDOMAIN', 'cluster.local');
  assertNegative(ask(z, '_._tcp.web.default.svc.cluster.local', 'SRV'), 'NXDOMAIN', 'cluster.local');
  assert.deepEqual(data(ask(z, '_metrics._udp.api.apps.svc.cluster.local', 'SRV')), [{ priority: 0, weight: 100, port: 9090, target: 'api.apps.svc.cluster.local' }]);
  assert.deepEqual(data(ask(z, '_https._tcp.kubernetes.default.svc.cluster.local', 'SRV')), [{ priority: 0, weight: 100, port: 443, target: 'kubernetes.default.svc.cluster.local' }]);
  // SRV at the Service's own name: every port (CoreDNS), weight 100/2.
  assert.deepEqual(data(ask(z, 'web.default.svc.cluster.local', 'SRV')), [
    { priority: 0, weight: 50, port: 80, target: 'web.default.svc.cluster.local' },
    { priority: 0, weight: 50, port: 8081, target: 'web.default.svc.cluster.local' },
  ]);

  const ptr = ask(z, '20.0.96.10.in-addr.arpa', 'PTR');
  assert.deepEqual(answers(ptr).map((r) => [r.name, r.type, r.ttl, r.data]), [['20.0.96.10.in-addr.arpa', 'PTR', 30, 'web.default.svc.cluster.local']]);
  assert.deepEqual(data(ask(z, '1.0.96.10.in-addr.arpa', 'PTR')), ['kubernetes.default.svc.cluster.local']);
  // A ready endpoint of a ClusterIP Service has its a-b-c-d name and PTR (as in CoreDNS); a not-ready one none.
  assert.deepEqual(data(ask(z, '10-244-1-2.web.default.svc.cluster.local')), ['10.244.1.2']);
  assert.deepEqual(data(ask(z, '2.1.244.10.in-addr.arpa', 'PTR')), ['10-244-1-2.web.default.svc.cluster.local']);
  assertNegative(ask(z, '10-244-2-3.web.default.svc.cluster.local'), 'NXDOMAIN', 'cluster.local');
  assert.equal(ask(z, '3.2.244.10.in-addr.arpa', 'PTR'), null, 'falls through: in-addr.arpa is listed');
});

test('a headless Service: A per ready endpoint, hostnames, SRV per endpoint and port, PTR; none ready: NXDOMAIN', () => {
  const z = zoneWith();
  const a = ask(z, 'db.default.svc.cluster.local');
  assert.deepEqual(answers(a).map((r) => [r.name, r.type, r.ttl, r.data]), [
    ['db.default.svc.cluster.local', 'A', 30, '10.244.1.9'],
    ['db.default.svc.cluster.local', 'A', 30, '10.244.2.9'],
  ]);
  assert.deepEqual(data(ask(z, 'db-0.db.default.svc.cluster.local')), ['10.244.1.9']);
  assert.deepEqual(data(ask(z, '10-244-2-9.db.default.svc.cluster.local')), ['10.244.2.9']);
  assertNegative(ask(z, 'db-2.db.default.svc.cluster.local'), 'NXDOMAIN', 'cluster.local');
  assertNegative(ask(z, 'db-0.db.default.svc.cluster.local', 'AAAA'), 'NOERROR', 'cluster.local');

  const srv = ask(z, '_pg._tcp.db.default.svc.cluster.local', 'SRV');
  assert.deepEqual(data(srv), [
    { priority: 0, weight: 50, port: 5432, target: 'db-0.db.default.svc.cluster.local' },
    { priority: 0, weight: 50, port: 5432, target: '10-244-2-9.db.default.svc.cluster.local' },
  ]);
  assert.deepEqual((srv!.additionals as unknown as Rr[]).map((r) => [r.name, r.type, r.ttl, r.data]), [
    ['db-0.db.default.svc.cluster.local', 'A', 30, '10.244.1.9'],
    ['10-244-2-9.db.default.svc.cluster.local', 'A', 30, '10.244.2.9'],
  ]);
  assert.deepEqual(data(ask(z, '9.1.244.10.in-addr.arpa', 'PTR')), ['db-0.db.default.svc.cluster.local']);
  assert.deepEqual(data(ask(z, '9.2.244.10.in-addr.arpa', 'PTR')), ['10-244-2-9.db.default.svc.cluster.local']);
  assertNegative(ask(z, '9.2.244.10.in-addr.arpa', 'A'), 'NOERROR', 'in-addr.arpa');

  // No ready endpoint: the name does not exist (spec 2.4.1), nor its SRV; its namespace does.
  assertNegative(ask(z, 'empty.default.svc.cluster.local'), 'NXDOMAIN', 'cluster.local');
  assertNegative(ask(z, '_pg._tcp.empty.default.svc.cluster.local', 'SRV'), 'NXDOMAIN', 'cluster.local');
  // publishNotReadyAddresses: every endpoint; no ports: A records and no SRV.
  assert.deepEqual(data(ask(z, 'peers.default.svc.cluster.local')), ['10.244.4.1', '10.244.4.2']);
  assertNegative(ask(z, 'peers.default.svc.cluster.local', 'SRV'), 'NOERROR', 'cluster.local');
});

const DUAL_SERVICES: Svc[] = [
  { ns: 'kube-system', name: 'kube-dns', clusterIP: '10.96.0.10', clusterIP6: 'fd00:10:96::a', ports: [{ name: 'dns', port: 53, protocol: L4Protocol.UDP }] },
  {
    ns: 'default', name: 'web', clusterIP: '10.96.0.20', clusterIP6: 'fd00:10:96::20', ports: [{ name: 'http', port: 80 }],
    endpoints: [{ ip: '10.244.1.2' }, { ip: 'fd00:10:244:1::2' }, { ip: 'fd00:10:244:2::3', ready: false }],
  },
  { ns: 'default', name: 'six', clusterIP6: 'fd00:10:96::6', ports: [{ name: 'http', port: 80 }], endpoints: [{ ip: 'fd00:10:244:1::6' }] },
  {
    ns: 'default', name: 'db', headless: true, ports: [{ name: 'pg', port: 5432 }],
    endpoints: [{ ip: '10.244.1.9', hostname: 'db-0' }, { ip: 'fd00:10:244:1::9', hostname: 'db-0' }, { ip: 'fd00:10:244:2::9' }],
  },
];

test('dual-stack: A and AAAA per family, NODATA for the family a name lacks, SRV targets with A and AAAA in additional', () => {
  const z = zoneWith(KUBEADM, DUAL_SERVICES);
  assert.deepEqual(answers(ask(z, 'web.default.svc.cluster.local', 'AAAA')).map((r) => [r.name, r.type, r.ttl, r.data]), [['web.default.svc.cluster.local', 'AAAA', 30, 'fd00:10:96::20']]);
  assert.deepEqual(data(ask(z, 'web.default.svc.cluster.local', 'A')), ['10.96.0.20']);
  // An IPv6-only Service: AAAA, and NODATA (the name exists) for A; the reverse for IPv4-only.
  assert.deepEqual(data(ask(z, 'six.default.svc.cluster.local', 'AAAA')), ['fd00:10:96::6']);
  assertNegative(ask(z, 'six.default.svc.cluster.local', 'A'), 'NOERROR', 'cluster.local');
  assertNegative(ask(zoneWith(), 'web.default.svc.cluster.local', 'AAAA'), 'NOERROR', 'cluster.local');
  // SRV: one record per port, the target's A and AAAA in the additional section.
  const srv = ask(z, '_http._tcp.web.default.svc.cluster.local', 'SRV');
  assert.deepEqual(data(srv), [{ priority: 0, weight: 100, port: 80, target: 'web.default.svc.cluster.local' }]);
  assert.deepEqual((srv!.additionals as unknown as Rr[]).map((r) => [r.name, r.type, r.data]), [
    ['web.default.svc.cluster.local', 'A', '10.96.0.20'],
    ['web.default.svc.cluster.local', 'AAAA', 'fd00:10:96::20'],
  ]);
  assert.deepEqual((ask(z, '_http._tcp.six.default.svc.cluster.local', 'SRV')!.additionals as unknown as Rr[]).map((r) => [r.type, r.data]), [['AAAA', 'fd00:10:96::6']]);
  // A ready IPv6 endpoint without a hostname: its address with dashes (CoreDNS's endpointHostname).
  assert.deepEqual(data(ask(z, 'fd00-10-244-1--2.web.default.svc.cluster.local', 'AAAA')), ['fd00:10:244:1::2']);
  assertNegative(ask(z, 'fd00-10-244-1--2.web.default.svc.cluster.local', 'A'), 'NOERROR', 'cluster.local');
  assertNegative(ask(z, 'fd00-10-244-2--3.web.default.svc.cluster.local', 'AAAA'), 'NXDOMAIN', 'cluster.local');
  // The name servers' addresses follow kube-dns's cluster IPs.
  assert.deepEqual(data(ask(z, 'ns.dns.cluster.local', 'AAAA')), ['fd00:10:96::a']);
  assert.deepEqual((ask(z, 'cluster.local', 'NS')!.additionals as unknown as Rr[]).map((r) => [r.type, r.data]), [['A', '10.96.0.10'], ['AAAA', 'fd00:10:96::a']]);
});

test('dual-stack headless: A and AAAA per ready endpoint, a hostname shared by both families, SRV with both in additional', () => {
  const z = zoneWith(KUBEADM, DUAL_SERVICES);
  assert.deepEqual(data(ask(z, 'db.default.svc.cluster.local', 'A')), ['10.244.1.9']);
  assert.deepEqual(data(ask(z, 'db.default.svc.cluster.local', 'AAAA')), ['fd00:10:244:1::9', 'fd00:10:244:2::9']);
  assert.deepEqual(data(ask(z, 'db-0.db.default.svc.cluster.local', 'A')), ['10.244.1.9']);
  assert.deepEqual(data(ask(z, 'db-0.db.default.svc.cluster.local', 'AAAA')), ['fd00:10:244:1::9']);
  const srv = ask(z, '_pg._tcp.db.default.svc.cluster.local', 'SRV');
  assert.deepEqual(data(srv), [
    { priority: 0, weight: 50, port: 5432, target: 'db-0.db.default.svc.cluster.local' },
    { priority: 0, weight: 50, port: 5432, target: 'fd00-10-244-2--9.db.default.svc.cluster.local' },
  ]);
  assert.deepEqual((srv!.additionals as unknown as Rr[]).map((r) => [r.name, r.type, r.data]), [
    ['db-0.db.default.svc.cluster.local', 'A', '10.244.1.9'],
    ['db-0.db.default.svc.cluster.local', 'AAAA', 'fd00:10:244:1::9'],
    ['fd00-10-244-2--9.db.default.svc.cluster.local', 'AAAA', 'fd00:10:244:2::9'],
  ]);
});

/** The ip6.arpa name of an IPv6 address (RFC 3596 2.5), built independently of the zone's code. */
function ip6arpa(ip: string): string {
  const hex = Buffer.from(parseIpv6(ip)!).toString('hex');
  return `${[...hex].reverse().join('.')}.ip6.arpa`;
}

test('dual-stack PTR: ip6.arpa names for IPv6 cluster IPs and ready endpoints, in-addr.arpa for IPv4 as before', () => {
  const z = zoneWith(KUBEADM, DUAL_SERVICES);
  assert.equal(ip6arpa('fd00:10:96::20'), '0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa');
  const ptr = ask(z, ip6arpa('fd00:10:96::20'), 'PTR');
  assert.deepEqual(answers(ptr).map((r) => [r.name, r.type, r.ttl, r.data]), [[ip6arpa('fd00:10:96::20'), 'PTR', 30, 'web.default.svc.cluster.local']]);
  assert.deepEqual(data(ask(z, '20.0.96.10.in-addr.arpa', 'PTR')), ['web.default.svc.cluster.local']);
  assert.deepEqual(data(ask(z, ip6arpa('fd00:10:96::6'), 'PTR')), ['six.default.svc.cluster.local']);
  assert.deepEqual(data(ask(z, ip6arpa('fd00:10:244:1::9'), 'PTR')), ['db-0.db.default.svc.cluster.local']);
  assert.deepEqual(data(ask(z, ip6arpa('fd00:10:244:2::9'), 'PTR')), ['fd00-10-244-2--9.db.default.svc.cluster.local']);
  assertNegative(ask(z, ip6arpa('fd00:10:244:2::9'), 'AAAA'), 'NOERROR', 'ip6.arpa');
  // A not-ready endpoint has none; ip6.arpa is listed under fallthrough, so the query falls through.
  assert.equal(ask(z, ip6arpa('fd00:10:244:2::3'), 'PTR'), null);
  // The records go with the Service.
  const z2 = new KubernetesZone(KUBEADM);
  z2.update(view(DUAL_SERVICES.map(service), 1));
  z2.update(view(DUAL_SERVICES.filter((s) => s.name !== 'web').map(service), 2));
  assert.equal(ask(z2, ip6arpa('fd00:10:96::20'), 'PTR'), null);
  assertNegative(ask(z2, 'web.default.svc.cluster.local', 'AAAA'), 'NXDOMAIN', 'cluster.local', 2);
  assert.deepEqual(data(ask(z2, ip6arpa('fd00:10:96::6'), 'PTR')), ['six.default.svc.cluster.local']);
});

test('ExternalName outside the zone: a CNAME for every type, not chased; an address-like name resolves to nothing', () => {
  const z = zoneWith();
  for (const type of ['A', 'AAAA', 'CNAME', 'SRV', 'TXT', 'MX', ANY] as dnsPacket.RecordType[]) {
    const r = ask(z, 'search.default.svc.cluster.local', type);
    assert.equal(r!.rcode, 'NOERROR');
    assert.equal(r!.flag_aa, true);
    assert.deepEqual(answers(r).map((a) => [a.name, a.type, a.ttl, a.data]), [['search.default.svc.cluster.local', 'CNAME', 30, 'search.example.com']], type);
  }
  assert.equal(z.cnameTarget('search.default.svc.cluster.local'), 'search.example.com');
  assert.equal(z.cnameTarget('web.default.svc.cluster.local'), '');
  assertNegative(ask(z, 'numeric.default.svc.cluster.local'), 'NXDOMAIN', 'cluster.local');
});

test('ExternalName to a name of the zone: the CNAME and the target\'s records, as CoreDNS; one level; kept current', () => {
  const alias: Svc = { ns: 'apps', name: 'alias', type: 'ExternalName', externalName: 'web.default.svc.cluster.local' };
  const chain: Svc = { ns: 'apps', name: 'chain', type: 'ExternalName', externalName: 'alias.apps.svc.cluster.local' };
  const toDb: Svc = { ns: 'apps', name: 'to-db', type: 'ExternalName', externalName: 'db.default.svc.cluster.local.' };
  const z = zoneWith(KUBEADM, [...SERVICES, alias, chain, toDb]);
  const a = ask(z, 'Alias.Apps.svc.cluster.local');
  assert.equal(a!.rcode, 'NOERROR');
  assert.deepEqual(answers(a).map((r) => [r.name, r.type, r.ttl, r.data]), [
    ['Alias.Apps.svc.cluster.local', 'CNAME', 30, 'web.default.svc.cluster.local'],
    ['web.default.svc.cluster.local', 'A', 30, '10.96.0.20'],
  ]);
  // SRV through the alias: the CNAME, the target's SRV records, their A records in the additional section.
  const srv = ask(z, 'to-db.apps.svc.cluster.local', 'SRV', { maxSize: 65535 });
  assert.deepEqual(answers(srv).map((r) => [r.name, r.type, r.data]), [
    ['to-db.apps.svc.cluster.local', 'CNAME', 'db.default.svc.cluster.local'],
    ['db.default.svc.cluster.local', 'SRV', { priority: 0, weight: 50, port: 5432, target: 'db-0.db.default.svc.cluster.local' }],
    ['db.default.svc.cluster.local', 'SRV', { priority: 0, weight: 50, port: 5432, target: '10-244-2-9.db.default.svc.cluster.local' }],
  ]);
  assert.deepEqual((srv!.additionals as unknown as Rr[]).map((r) => [r.name, r.data]), [['db-0.db.default.svc.cluster.local', '10.244.1.9'], ['10-244-2-9.db.default.svc.cluster.local', '10.244.2.9']]);
  // Cut to 512 bytes: the additional section goes, the answer stays whole.
  const cut = ask(z, 'to-db.apps.svc.cluster.local', 'SRV', { maxSize: 120 + 'to-db.apps.svc.cluster.local'.length });
  assert.equal(cut!.flag_tc, false);
  assert.equal(cut!.answers!.length, 3);
  assert.equal(cut!.additionals!.length, 0);
  // The target has no AAAA: the CNAME alone. A chain is followed one level only.
  assert.deepEqual(answers(ask(z, 'alias.apps.svc.cluster.local', 'AAAA')).map((r) => r.type), ['CNAME']);
  assert.deepEqual(answers(ask(z, 'chain.apps.svc.cluster.local')).map((r) => [r.type, r.data]), [['CNAME', 'alias.apps.svc.cluster.local']]);
  assert.deepEqual(answers(ask(z, 'alias.apps.svc.cluster.local', 'CNAME')).map((r) => r.type), ['CNAME']);

  // The target changes, the ExternalName's own view object does not: the chase follows.
  const views = [...SERVICES, alias, chain, toDb].map(service);
  z.update(view(views, 8));
  const moved = views.map((v) => (v.name === 'web' ? { ...v, clusterIP: ipv4('10.96.0.77') } : v));
  z.update(view(moved, 9));
  assert.deepEqual(data(ask(z, 'alias.apps.svc.cluster.local')), ['web.default.svc.cluster.local', '10.96.0.77']);
  z.update(view(moved.filter((v) => v.name !== 'web'), 10));
  assert.deepEqual(data(ask(z, 'alias.apps.svc.cluster.local')), ['web.default.svc.cluster.local']);
});

test('pod records: insecure answers a-b-c-d in any namespace; disabled answers none', () => {
  const z = zoneWith();
  const r = ask(z, '10-244-1-7.anything.pod.cluster.local');
  assert.deepEqual(answers(r).map((a) => [a.name, a.type, a.ttl, a.data]), [['10-244-1-7.anything.pod.cluster.local', 'A', 30, '10.244.1.7']]);
  assert.deepEqual(data(ask(z, '0-0-0-0.default.pod.cluster.local')), ['0.0.0.0']);
  assert.deepEqual(data(ask(z, '255-255-255-255.default.pod.cluster.local')), ['255.255.255.255']);
  assertNegative(ask(z, '10-244-1-7.default.pod.cluster.local', 'AAAA'), 'NOERROR', 'cluster.local');
  assertNegative(ask(z, 'default.pod.cluster.local'), 'NOERROR', 'cluster.local');
  for (const bad of ['10-244-1-256', '10-244-1', '10-244-1-7-8', '010-244-1-7', 'web', '1000-1-1-1', '-1-2-3']) {
    assertNegative(ask(z, `${bad}.default.pod.cluster.local`), 'NXDOMAIN', 'cluster.local');
  }
  // IPv6 pods: the address with dashes for colons, as CoreDNS reads a name with "--" or
  // other than three dashes; AAAA, and NODATA for A.
  const v6 = ask(z, 'fd00-10-244-1--5.default.pod.cluster.local', 'AAAA');
  assert.deepEqual(answers(v6).map((a) => [a.name, a.type, a.ttl, a.data]), [['fd00-10-244-1--5.default.pod.cluster.local', 'AAAA', 30, 'fd00:10:244:1::5']]);
  assertNegative(ask(z, 'fd00-10-244-1--5.default.pod.cluster.local', 'A'), 'NOERROR', 'cluster.local');
  const six = (name: string): unknown[] => data(ask(z, `${name}.default.pod.cluster.local`, 'AAAA'));
  assert.deepEqual(six('10-244--1'), ['10:244::1']);
  assert.deepEqual(six('--1'), ['::1']);
  assert.deepEqual(six('fd00--'), ['fd00::']);
  assert.deepEqual(six('--'), ['::']);
  assert.deepEqual(six('2001-db8-0-0-0-0-0-1'), ['2001:db8::1']);
  assert.deepEqual(six('2001-db8-1-2-3-4--'), ['2001:db8:1:2:3:4::']);
  for (const bad of ['fd00---1', 'fd00--1--2', '12345--1', 'g--1', '1-2-3-4-5-6-7-8-9', '1-2-3-4-5-6-7--8-9', '-fd00--1', 'fd00-', 'fd00--1-']) {
    assertNegative(ask(z, `${bad}.default.pod.cluster.local`, 'AAAA'), 'NXDOMAIN', 'cluster.local');
  }
  assertNegative(ask(z, 'x.10-244-1-7.default.pod.cluster.local'), 'NXDOMAIN', 'cluster.local');

  const off = zoneWith({ ...KUBEADM, pods: 'disabled' });
  assertNegative(ask(off, '10-244-1-7.default.pod.cluster.local'), 'NXDOMAIN', 'cluster.local');
  assertNegative(ask(off, 'default.pod.cluster.local'), 'NXDOMAIN', 'cluster.local');
  assertNegative(ask(off, 'pod.cluster.local'), 'NOERROR', 'cluster.local');
});

test('names are case-insensitive and come back as the client wrote them (0x20)', () => {
  const z = zoneWith();
  const r = ask(z, 'WeB.DeFaUlT.SvC.ClUsTeR.LoCaL');
  assert.deepEqual(answers(r).map((a) => [a.name, a.data]), [['WeB.DeFaUlT.SvC.ClUsTeR.LoCaL', '10.96.0.20']]);
  const srv = ask(z, '_HTTP._Tcp.Web.Default.Svc.Cluster.Local', 'SRV');
  assert.equal(answers(srv)[0]!.name, '_HTTP._Tcp.Web.Default.Svc.Cluster.Local');
  // Compressed against the question, the target keeps the question's spelling of the shared suffix.
  assert.equal((data(srv)[0] as { target: string }).target.toLowerCase(), 'web.default.svc.cluster.local');
  const nx = ask(z, 'Nope.Default.Svc.CLUSTER.local');
  assert.equal(nx!.rcode, 'NXDOMAIN');
  assert.equal((nx!.authorities![0] as unknown as Rr).name, 'CLUSTER.local');
  assert.equal(answers(ask(z, '7-7-7-7.NS.POD.cluster.local'))[0]!.name, '7-7-7-7.NS.POD.cluster.local');
  assert.deepEqual(data(ask(z, '20.0.96.10.IN-ADDR.ARPA', 'PTR')), ['web.default.svc.cluster.local']);
});

test('fallthrough: a missing name in a listed zone is not handled; NODATA and other zones are answered', () => {
  const z = zoneWith();
  assert.equal(ask(z, '1.2.3.4.in-addr.arpa', 'PTR'), null);
  assert.equal(ask(z, '4.3.2.1.ip6.arpa', 'PTR'), null);
  assert.equal(ask(z, 'example.com'), null, 'outside every zone');
  assert.equal(ask(z, ''.concat('cluster.local.example'), 'A'), null);
  assert.equal(z.owns('web.default.svc.cluster.local'), true);
  assert.equal(z.owns('CLUSTER.local'.toLowerCase()), true);
  assert.equal(z.owns('xcluster.local'), false);
  assert.equal(z.owns('1.0.96.10.in-addr.arpa'), true);
  assert.equal(z.owns(''), false);
  // One label "x.cluster" then "local": not in cluster.local, though the string ends so.
  assert.equal(z.owns('x\\.cluster.local'), false);
  assert.equal(z.owns('x\\\\.cluster.local'), true, 'an escaped backslash, then a real dot');
  const escaped = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, ...Buffer.from('x.cluster'), 5, ...Buffer.from('local'), 0, 0, 1, 0, 1]);
  assert.equal(readQuery(escaped, escaped.length, q), true);
  assert.equal(q.qname, 'x\\.cluster.local');
  assert.equal(z.answer(escaped, escaped.length, q, res, 512), NOT_HANDLED);
  assertNegative(ask(z, 'nope.cluster.local'), 'NXDOMAIN', 'cluster.local');

  const none = zoneWith({ ...KUBEADM, fallthrough: null });
  assertNegative(ask(none, '1.2.3.4.in-addr.arpa', 'PTR'), 'NXDOMAIN', 'in-addr.arpa');
  const all = zoneWith({ ...KUBEADM, fallthrough: [] });
  assert.equal(ask(all, 'nope.cluster.local'), null);
  assert.equal(ask(all, '1.2.3.4.in-addr.arpa', 'PTR'), null);
  assertNegative(ask(all, 'svc.cluster.local'), 'NOERROR', 'cluster.local');
  // A fallthrough zone below one of ours.
  const narrow = zoneWith({ ...KUBEADM, fallthrough: ['10.in-addr.arpa'] });
  assert.equal(ask(narrow, '1.2.3.10.in-addr.arpa', 'PTR'), null);
  assertNegative(ask(narrow, '1.2.3.4.in-addr.arpa', 'PTR'), 'NXDOMAIN', 'in-addr.arpa');
});

test('EDNS, classes, zone transfers, ANY and the time before the first view', () => {
  const z = zoneWith();
  const e = ask(z, 'web.default.svc.cluster.local', 'A', { edns: 1232, dnssecOk: true });
  const opt = e!.additionals![0] as dnsPacket.OptAnswer;
  assert.equal(opt.type, 'OPT');
  assert.equal(opt.udpPayloadSize, 1232, 'the requester\'s size, as CoreDNS');
  assert.equal(opt.flag_do, true);
  assert.equal(opt.ednsVersion, 0);
  const small = ask(z, 'nope.cluster.local', 'A', { edns: 100 });
  assert.equal((small!.additionals![0] as dnsPacket.OptAnswer).udpPayloadSize, 512);
  assert.equal(small!.rcode, 'NXDOMAIN');
  assert.equal(ask(z, 'web.default.svc.cluster.local')!.additionals!.length, 0);

  // EDNS version 1: BADVERS (RFC 6891 6.1.3).
  const v1 = query('web.default.svc.cluster.local', 'A', { edns: 1232 });
  v1[v1.length - 11 + 6] = 1;
  assert.equal(readQuery(v1, v1.length, q), true);
  const n = z.answer(v1, v1.length, q, res, 1232);
  const bv = dnsPacket.decode(Buffer.from(res.subarray(0, n))) as Decoded;
  assert.equal(bv.answers!.length, 0);
  assert.equal((bv.additionals![0] as dnsPacket.OptAnswer).extendedRcode, 1);

  const ch = ask(z, 'web.default.svc.cluster.local', 'A', { cls: 'CH' });
  assert.equal(ch!.rcode, 'REFUSED');
  assert.equal(ch!.answers!.length, 0);
  assert.equal(ask(z, 'cluster.local', 'AXFR', { maxSize: 65535 })!.rcode, 'REFUSED');
  assert.equal(ask(z, 'cluster.local', 'IXFR', { maxSize: 65535 })!.rcode, 'REFUSED');
  // ANY: CoreDNS's kubernetes plugin answers it as a type the name has no data for.
  assertNegative(ask(z, 'web.default.svc.cluster.local', ANY), 'NOERROR', 'cluster.local');

  const fresh = new KubernetesZone(KUBEADM);
  const sf = ask(fresh, 'web.default.svc.cluster.local');
  assert.equal(sf!.rcode, 'SERVFAIL');
  assert.equal(ask(fresh, 'example.com'), null);
});

test('an answer larger than maxSize: the additional section goes first, then TC with no records', () => {
  const many: Svc = {
    ns: 'default', name: 'big', headless: true, ports: [{ name: 'http', port: 80 }],
    endpoints: Array.from({ length: 100 }, (_, i) => ({ ip: `10.250.${i >> 8}.${i & 0xff}`, hostname: `big-${i}` })),
  };
  const z = zoneWith(KUBEADM, [...SERVICES, many]);
  const udp = ask(z, 'big.default.svc.cluster.local', 'A', { maxSize: 512 });
  assert.equal(udp!.flag_tc, true);
  assert.equal(udp!.rcode, 'NOERROR');
  assert.equal(udp!.answers!.length, 0);
  const edns = ask(z, 'big.default.svc.cluster.local', 'A', { edns: 4096 });
  assert.equal(edns!.flag_tc, false);
  assert.equal(edns!.answers!.length, 100);
  assert.equal(edns!.additionals!.length, 1);
  const tcp = ask(z, 'big.default.svc.cluster.local', 'A', { maxSize: 65535 });
  assert.equal(tcp!.answers!.length, 100);
  assert.deepEqual(new Set(data(tcp)), new Set(many.endpoints!.map((e) => e.ip)));
  const tcOpt = ask(z, 'big.default.svc.cluster.local', 'A', { edns: 1232 });
  assert.equal(tcOpt!.flag_tc, true);
  assert.equal((tcOpt!.additionals![0] as dnsPacket.OptAnswer).type, 'OPT');

  // SRV: 100 records of ~ 2+10+6+9 bytes fit in 4096 with their targets written out;
  // the 100 A records after them do not: dropped, no TC (RFC 2181 9).
  const srv = ask(z, '_http._tcp.big.default.svc.cluster.local', 'SRV', { edns: 4096 });
  assert.equal(srv!.flag_tc, false);
  assert.equal(srv!.answers!.length, 100);
  assert.equal((data(srv)[0] as { weight: number }).weight, 1, 'CoreDNS: floor(100/100), at least 1');
  const full = ask(z, '_http._tcp.big.default.svc.cluster.local', 'SRV', { maxSize: 65535 });
  assert.equal(full!.additionals!.length, 100);
  assert.ok(srv!.additionals!.length === 1, 'only the OPT');
});

test('update() replaces the records whole; the SOA serial follows the view generation', () => {
  const z = zoneWith();
  assert.deepEqual(data(ask(z, 'web.default.svc.cluster.local')), ['10.96.0.20']);
  const changed = SERVICES.map((s) => (s.name === 'web' ? { ...s, clusterIP: '10.96.0.21' } : s)).filter((s) => s.name !== 'api');
  z.update(view(changed.map(service), 8));
  assert.deepEqual(data(ask(z, 'web.default.svc.cluster.local')), ['10.96.0.21']);
  assertNegative(ask(z, 'api.apps.svc.cluster.local'), 'NXDOMAIN', 'cluster.local', 8);
  assertNegative(ask(z, 'apps.svc.cluster.local'), 'NXDOMAIN', 'cluster.local', 8);
  assert.equal(ask(z, '20.0.96.10.in-addr.arpa', 'PTR'), null);
  assert.deepEqual(data(ask(z, '21.0.96.10.in-addr.arpa', 'PTR')), ['web.default.svc.cluster.local']);
  // Another TTL and zone name.
  const other = zoneWith({ zones: ['Corp.Example.'], ttl: 5, pods: 'disabled', fallthrough: null });
  assert.deepEqual(answers(ask(other, 'web.default.svc.corp.example')).map((a) => [a.ttl, a.data]), [[5, '10.96.0.20']]);
  assertNegative(ask(other, 'nope.corp.example'), 'NXDOMAIN', 'corp.example', 7, 5);
  assert.equal(ask(other, '20.0.96.10.in-addr.arpa', 'PTR'), null, 'no reverse zone listed');
  // Two forward zones: the records in both, PTR targets in the first (CoreDNS's primary zone).
  const two = zoneWith({ zones: ['in-addr.arpa', 'cluster.local', 'corp.example'], ttl: 30, pods: 'insecure', fallthrough: null });
  assert.deepEqual(data(ask(two, 'web.default.svc.corp.example')), ['10.96.0.20']);
  assert.deepEqual(data(ask(two, 'db-0.db.default.svc.corp.example')), ['10.244.1.9']);
  assert.deepEqual(data(ask(two, '_http._tcp.web.default.svc.corp.example', 'SRV')), [{ priority: 0, weight: 100, port: 80, target: 'web.default.svc.corp.example' }]);
  assert.deepEqual(data(ask(two, '20.0.96.10.in-addr.arpa', 'PTR')), ['web.default.svc.cluster.local']);
  assert.deepEqual(data(ask(two, '1-2-3-4.x.pod.corp.example')), ['1.2.3.4']);
  assertNegative(ask(two, 'default.svc.corp.example'), 'NOERROR', 'corp.example');
});

test('options the zone cannot honour are refused with a clear error', () => {
  assert.throws(() => new KubernetesZone({ ...KUBEADM, endpointPodNames: true }), (e: unknown) => e instanceof KubernetesZoneError && /endpoint_pod_names/.test(e.message) && e.code === 'TAPIR_DNS_ZONE');
  assert.throws(() => new KubernetesZone({ ...KUBEADM, zones: ['in-addr.arpa'] }), /no forward zone/);
  assert.throws(() => new KubernetesZone({ ...KUBEADM, ttl: 3601 }), /ttl 3601/);
  assert.throws(() => new KubernetesZone({ ...KUBEADM, zones: ['bad..zone'] }), /not a domain name/);
});

test('a view compiled from manifests by the ServiceController: pod hostname and subdomain through a headless Service', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-dnszone-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'all.yaml'), `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: sub}
spec:
  clusterIP: None
  selector: {app: sub}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: c, ports: [{containerPort: 8080}]}]
status:
  podIP: 10.244.1.2
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Pod
metadata: {name: sub-0, labels: {app: sub}}
spec:
  nodeName: node-1
  hostname: host-a
  subdomain: sub
  containers: [{name: c, ports: [{containerPort: 5432}]}]
status:
  podIP: 10.244.1.9
  conditions: [{type: Ready, status: "True"}]
`);
  const c = new ServiceController({
    source: new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 10 }),
    node: { name: 'node-1', nodePortAddresses: ['10.0.0.1'] },
    serviceCIDR: parseCidr('10.96.0.0/16')!,
    minSyncIntervalMs: 10,
    retryIntervalMs: 20,
    onError: (e) => errors.push(e),
  });
  const errors: Error[] = [];
  t.after(() => c.stop());
  const z = new KubernetesZone(KUBEADM);
  c.subscribe((v) => z.update(v));
  await c.start();
  const web = c.view!.services.find((s) => s.name === 'web')!;
  assert.equal(answers(ask(z, 'web.default.svc.cluster.local'))[0]!.data, `${web.clusterIP >>> 24}.${(web.clusterIP >>> 16) & 0xff}.${(web.clusterIP >>> 8) & 0xff}.${web.clusterIP & 0xff}`);
  assert.deepEqual(data(ask(z, 'host-a.sub.default.svc.cluster.local')), ['10.244.1.9']);
  assert.deepEqual(data(ask(z, 'sub.default.svc.cluster.local')), ['10.244.1.9']);
  assert.deepEqual(data(ask(z, '_pg._tcp.sub.default.svc.cluster.local', 'SRV')), [{ priority: 0, weight: 100, port: 5432, target: 'host-a.sub.default.svc.cluster.local' }]);
  assert.deepEqual(data(ask(z, '9.1.244.10.in-addr.arpa', 'PTR')), ['host-a.sub.default.svc.cluster.local']);
  assert.deepEqual(data(ask(z, '_http._tcp.web.default.svc.cluster.local', 'SRV')), [{ priority: 0, weight: 100, port: 80, target: 'web.default.svc.cluster.local' }]);
  assert.deepEqual(errors, []);
});


test('fuzz: every Service shape, random names, types, sizes and bytes; every response decodes', () => {
  const random = prng(1234);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const z = zoneWith();
  const labels = ['web', 'db', 'db-0', 'empty', 'peers', 'search', 'numeric', 'api', 'kubernetes', 'kube-dns', 'default', 'apps', 'kube-system', 'svc', 'pod',
    '_http', '_tcp', '_udp', '_pg', '10-244-1-2', '10-244-2-9', '1-2-3-4', 'cluster', 'local', 'in-addr', 'arpa', 'ip6', '9', '1', '244', '10', 'dns', 'ns', 'dns-version', 'X'];
  const types: dnsPacket.RecordType[] = ['A', 'AAAA', 'NS', 'CNAME', 'SOA', 'PTR', 'MX', 'TXT', 'SRV', ANY, 'AXFR', 'HINFO', 'CAA', 'NAPTR'];
  const suffixes = ['cluster.local', 'svc.cluster.local', 'default.svc.cluster.local', 'pod.cluster.local', 'in-addr.arpa', '10.in-addr.arpa', 'example.com', ''];
  const buf = new Uint8Array(65535);
  let answered = 0;
  for (let i = 0; i < 20000; i++) {
    const parts = Array.from({ length: Math.floor(random() * 4) }, () => pick(labels));
    const suffix = pick(suffixes);
    const name = [...parts, ...(suffix === '' ? [] : [suffix])].join('.') || 'cluster.local';
    const cased = [...name].map((ch) => (random() < 0.3 ? ch.toUpperCase() : ch)).join('');
    const type = pick(types);
    const edns = random() < 0.5 ? Math.floor(random() * 5000) : undefined;
    const msg = query(cased, type, { ...(edns !== undefined ? { edns } : {}), cls: random() < 0.05 ? 'CH' : 'IN' });
    // Some queries get a byte flipped: readQuery decides, errorResponse answers the refused ones.
    if (random() < 0.2) msg[Math.floor(random() * msg.length)] = Math.floor(random() * 256);
    if (!readQuery(msg, msg.length, q)) {
      const n = errorResponse(msg, msg.length, q.rcode, buf);
      if (n > 0) dnsPacket.decode(Buffer.from(buf.subarray(0, n)));
      continue;
    }
    const maxSize = pick([512, 1232, 4096, 65535]);
    const n = z.answer(msg, msg.length, q, buf, maxSize);
    if (n === NOT_HANDLED) continue;
    answered++;
    assert.ok(n <= maxSize || n <= 512);
    const r = dnsPacket.decode(Buffer.from(buf.subarray(0, n))) as Decoded;
    assert.equal(r.id, q.id);
    assert.equal(r.questions!.length, 1);
    for (const a of r.answers as unknown as Rr[]) assert.equal(a.name.toLowerCase(), r.questions![0]!.name.toLowerCase());
  }
  assert.ok(answered > 5000, `${answered} answered`);

  // Every view shape through update(): empty, only headless, only ExternalName, duplicates.
  for (const services of [[], [SERVICES[3]!], [SERVICES[6]!], SERVICES, [...SERVICES, { ...SERVICES[2]!, ns: 'dup' }, { ...SERVICES[2]!, ns: 'dup2' }]]) {
    const zz = zoneWith(KUBEADM, services);
    for (const name of ['web.default.svc.cluster.local', 'db.default.svc.cluster.local', 'web.dup.svc.cluster.local', '20.0.96.10.in-addr.arpa']) {
      for (const type of types) ask(zz, name, type, { maxSize: 65535 });
    }
  }
  // The duplicated cluster IP: the first Service in view order names it.
  const dup = zoneWith(KUBEADM, [...SERVICES, { ...SERVICES[2]!, ns: 'aaa' }]);
  assert.deepEqual(data(ask(dup, '20.0.96.10.in-addr.arpa', 'PTR')), ['web.aaa.svc.cluster.local']);
});

test('dig and kdig ask the zone over UDP and TCP on 127.0.0.1 (truncation, then TCP)', async (t) => {
  const many: Svc = {
    ns: 'default', name: 'big', headless: true, ports: [{ name: 'http', port: 80 }],
    endpoints: Array.from({ length: 60 }, (_, i) => ({ ip: `10.250.0.${i + 1}` })),
  };
  const z = zoneWith(KUBEADM, [...SERVICES, many]);
  const info = newQueryInfo();
  const out = new Uint8Array(65535);
  const serve = (msg: Uint8Array, maxSizeFor: (qi: QueryInfo) => number): Uint8Array | null => {
    let n: number;
    if (!readQuery(msg, msg.length, info)) n = errorResponse(msg, msg.length, info.rcode, out);
    else {
      n = z.answer(msg, msg.length, info, out, maxSizeFor(info));
      if (n === NOT_HANDLED) n = errorResponse(msg, msg.length, 5, out); // no forwarder here: REFUSED
    }
    return n === 0 ? null : Buffer.from(out.subarray(0, n));
  };
  const udp = createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    const r = serve(msg, (qi) => (qi.edns ? Math.max(512, qi.ednsUdpSize) : 512));
    if (r !== null) udp.send(r, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const port = udp.address().port;
  // TCP on the same port number (RFC 7766 framing: a 2-byte length before each message).
  const tcp = createServer((s) => {
    let pending = Buffer.alloc(0);
    s.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const msg = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + msg.length);
        const r = serve(msg, () => 65535);
        if (r !== null) s.write(Buffer.concat([Buffer.from([r.length >> 8, r.length & 0xff]), r]));
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((resolve, reject) => { tcp.once('error', reject); tcp.listen(port, '127.0.0.1', () => resolve()); });
  t.after(() => { udp.close(); tcp.close(); });
  const run = promisify(execFile);
  const dig = async (...args: string[]): Promise<string> => (await run('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args], { timeout: 10_000 })).stdout;

  assert.equal((await dig('+short', 'web.default.svc.cluster.local')).trim(), '10.96.0.20');
  assert.equal((await dig('+short', '+tcp', 'web.default.svc.cluster.local')).trim(), '10.96.0.20');
  assert.equal((await dig('+short', 'SRV', '_http._tcp.web.default.svc.cluster.local')).trim(), '0 100 80 web.default.svc.cluster.local.');
  assert.equal((await dig('+short', '-x', '10.96.0.20')).trim(), 'web.default.svc.cluster.local.');
  assert.equal((await dig('+short', '10-1-2-3.x.pod.cluster.local')).trim(), '10.1.2.3');
  assert.equal((await dig('+short', 'TXT', 'dns-version.cluster.local')).trim(), '"1.1.0"');
  const nx = await dig('nope.default.svc.cluster.local');
  assert.match(nx, /status: NXDOMAIN/);
  assert.match(nx, /flags: qr aa rd;/);
  assert.match(nx, /cluster\.local\.\s+30\s+IN\s+SOA\s+ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\. 7 7200 1800 86400 30/);
  const nodata = await dig('AAAA', 'web.default.svc.cluster.local');
  assert.match(nodata, /status: NOERROR/);
  assert.match(nodata, /ANSWER: 0, AUTHORITY: 1/);
  // 60 A records (~ 1 KB) over UDP without EDNS: truncated; dig retries over TCP by itself.
  const big = await dig('+noedns', 'big.default.svc.cluster.local');
  assert.match(big, /Truncated, retrying in TCP mode/);
  assert.match(big, /ANSWER: 60,/);
  const ignored = await dig('+noedns', '+ignore', 'big.default.svc.cluster.local');
  assert.match(ignored, /flags: qr aa tc rd;.*ANSWER: 0,/);
  // Mixed case (0x20) survives in the answer; kdig's EDNS is echoed.
  assert.match(await dig('Web.Default.SVC.cluster.local'), /\nWeb\.Default\.SVC\.cluster\.local\.\s+30\s+IN\s+A\s+10\.96\.0\.20/);
  const k = (await run('kdig', ['@127.0.0.1', '-p', String(port), '+edns=0', '+bufsize=1400', 'web.default.svc.cluster.local', 'A'], { timeout: 10_000 })).stdout;
  assert.match(k, /web\.default\.svc\.cluster\.local\.\s+30\s+IN\s+A\s+10\.96\.0\.20/);
  assert.match(k, /Version: 0; flags: ; UDP size: 1400 B/);
  const kt = (await run('kdig', ['@127.0.0.1', '-p', String(port), '+tcp', 'big.default.svc.cluster.local', 'A'], { timeout: 10_000 })).stdout;
  assert.equal([...kt.matchAll(/\sIN\s+A\s+10\.250\.0\.\d+/g)].length, 60);
});

test('updates applied one after another answer exactly as a zone compiled from the last view alone', () => {
  const random = prng(99);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  let views = SERVICES.map(service);
  const zone = new KubernetesZone(KUBEADM);
  zone.update(view(views, 1));
  const names = (z: KubernetesZone): string[] => [...(z as unknown as { records: { table: { names: Map<string, number> } } }).records.table.names.keys()].sort();
  const types: dnsPacket.RecordType[] = ['A', 'AAAA', 'SRV', 'PTR', 'TXT', 'CNAME', 'NS', 'SOA'];
  const bytes = (z: KubernetesZone, name: string, type: dnsPacket.RecordType): string => {
    const msg = query(name, type, { edns: 4096 });
    readQuery(msg, msg.length, q);
    const n = z.answer(msg, msg.length, q, res, 4096);
    return Buffer.from(res.subarray(0, n)).toString('hex');
  };
  const ips = ['10.244.1.2', '10.244.1.3', '10.244.2.9', '10.244.7.7', '10.96.0.20', '10.96.0.99'];
  for (let round = 2; round < 120; round++) {
    // One to three Services change; every other view object stays the same (the controller's identity rule).
    for (let k = 1 + Math.floor(random() * 3); k > 0; k--) {
      const i = Math.floor(random() * views.length);
      const s = views[i]!;
      const roll = random();
      let next: ServiceView | null;
      if (roll < 0.15) next = null;
      else if (roll < 0.3) next = service({ ns: pick(['default', 'apps', 'new']), name: `s${round}`, clusterIP: `10.96.1.${round}`, ports: [{ name: 'http', port: 80 }], endpoints: [{ ip: pick(ips) }] });
      else if (roll < 0.5) next = { ...s, endpoints: frozen([...s.endpoints.filter(() => random() < 0.7), ...(random() < 0.5 ? [frozen({ ...service({ name: 'x', endpoints: [{ ip: pick(ips), hostname: pick(['', 'h1', 'h2']) }] }).endpoints[0]! })] : [])].sort((a, b) => a.ip - b.ip)) };
      else if (roll < 0.65) next = { ...s, endpoints: frozen(s.endpoints.map((e) => frozen({ ...e, ready: random() < 0.5 }))) };
      else if (roll < 0.8 && !s.headless && s.type !== 'ExternalName') next = { ...s, clusterIP: ipv4(pick(ips)) };
      else if (roll < 0.9) next = { ...s, type: 'ExternalName', externalName: pick(['a.example', '10.0.0.1', 'web.default.svc.cluster.local', 'db.default.svc.cluster.local', 'x.apps.svc.cluster.local']), clusterIP: 0, headless: false };
      else next = { ...s, headless: !s.headless, clusterIP: s.headless ? ipv4(`10.96.2.${round}`) : 0, type: 'ClusterIP' };
      if (next === null) views.splice(i, 1);
      else if (next.key === s.key) views[i] = Object.freeze(next);
      else if (!views.some((v) => v.key === next!.key)) views.push(next);
    }
    views = [...views];
    zone.update(view(views, round));
    const fresh = new KubernetesZone(KUBEADM);
    fresh.update(view(views, round));
    const expected = names(fresh);
    assert.deepEqual(names(zone), expected, `round ${round}`);
    for (const name of expected) for (const type of types) assert.equal(bytes(zone, name, type), bytes(fresh, name, type), `round ${round}: ${name} ${type}`);
    for (const name of ['gone.default.svc.cluster.local', '7.7.244.10.in-addr.arpa']) assert.equal(bytes(zone, name, 'A'), bytes(fresh, name, 'A'));
  }
});

test('replaced bodies are garbage until the arena is compacted; answers are the same after', () => {
  const zone = new KubernetesZone(KUBEADM);
  const arena = (): { pos: number } => (zone as unknown as { records: { table: { arena: { pos: number } } } }).records.table.arena;
  const big = (round: number): ServiceView => service({
    ns: 'default', name: 'big', headless: true, ports: [{ name: 'http', port: 80 }],
    endpoints: Array.from({ length: 1500 }, (_, i) => ({ ip: `10.${200 + (round % 2)}.${i >> 8}.${i & 0xff}`, hostname: `big-${i}` })),
  });
  const rest = SERVICES.map(service);
  let peak = 0;
  let compacted = false;
  for (let round = 0; round < 30; round++) {
    zone.update(view([...rest, big(round)], round + 1));
    if (arena().pos < peak) compacted = true;
    peak = Math.max(peak, arena().pos);
  }
  assert.ok(compacted, `the arena shrank at least once (peak ${peak} bytes)`);
  const fresh = new KubernetesZone(KUBEADM);
  fresh.update(view([...rest, big(29)], 30));
  for (const [name, type] of [['big.default.svc.cluster.local', 'A'], ['_http._tcp.big.default.svc.cluster.local', 'SRV'], ['big-7.big.default.svc.cluster.local', 'A'],
    ['7.0.201.10.in-addr.arpa', 'PTR'], ['web.default.svc.cluster.local', 'A'], ['cluster.local', 'SOA']] as const) {
    const a = ask(zone, name, type, { maxSize: 65535 });
    const b = ask(fresh, name, type, { maxSize: 65535 });
    assert.deepEqual(a, b, `${name} ${type}`);
  }
  assert.equal(ask(zone, '_http._tcp.big.default.svc.cluster.local', 'SRV', { maxSize: 65535 })!.answers!.length, 1500);
  assert.equal(ask(zone, '7.0.200.10.in-addr.arpa', 'PTR'), null, 'the other round\'s addresses are gone (and fall through)');
});

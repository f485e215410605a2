// The records bench/dns.ts serves twice: as a manifest directory of Services and
// EndpointSlices for `tapir dns --manifests`, and as the zone files NSD serves for the
// same names (what the Kubernetes DNS specification 1.1.0 and CoreDNS's `kubernetes`
// plugin answer for a ClusterIP Service with one named port), plus the dnsperf query
// files of the three mixes and the external zone the upstream serves.
//
// N ClusterIP Services `svc-NNNNN` spread over 10 namespaces `ns-K`, each with port
// `http` 80/TCP and an EndpointSlice of E ready endpoints (endpoints of a ClusterIP
// Service add no DNS record: they are there for the memory figure, 10k Services with
// 100k endpoints). Per Service the zone has
//   svc-NNNNN.ns-K.svc.cluster.local.             A    <cluster IP>
//   _http._tcp.svc-NNNNN.ns-K.svc.cluster.local.  SRV  0 100 80 svc-NNNNN.ns-K.svc.cluster.local.
//   <reversed cluster IP>.in-addr.arpa.            PTR  svc-NNNNN.ns-K.svc.cluster.local.
// and the zone apex has CoreDNS's SOA (ns.dns.<zone>. hostmaster.<zone>. ... 7200 1800
// 86400 <ttl>), its NS and `dns-version` TXT "1.1.0". Everything is deterministic (a
// seeded generator shuffles the query files), so two runs query the same names in the
// same order.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ZONE = 'cluster.local';
/** The namespace of the pod whose resolv.conf the search-path mix plays. */
export const POD_NAMESPACE = 'default';
/** kubelet's ClusterFirst search list for a pod in POD_NAMESPACE (options ndots:5). */
export const SEARCH = [`${POD_NAMESPACE}.svc.${ZONE}`, `svc.${ZONE}`, ZONE];
export const EXTERNAL_ZONE = 'example.test';
const NAMESPACES = 10;
const DNS_SERVICE_IP = '10.96.0.10';

export interface DnsData {
  services: number;
  endpointsPerService: number;
  externalNames: number;
  /** Seconds, the kubernetes plugin's `ttl` and the NSD zone's $TTL. */
  ttl: number;
}

export function serviceName(i: number): string {
  return `svc-${String(i).padStart(5, '0')}`;
}

export function serviceNamespace(i: number): string {
  return `ns-${i % NAMESPACES}`;
}

export function serviceFqdn(i: number): string {
  return `${serviceName(i)}.${serviceNamespace(i)}.svc.${ZONE}`;
}

/** 10.96.1.0 onwards: clear of the `kubernetes` (.0.1) and `kube-dns` (.0.10) addresses. */
export function clusterIP(i: number): string {
  const k = 256 + i;
  if (k > 0xfffe) throw new Error(`service ${i}: 10.96.0.0/16 holds at most ${0xfffe - 256} bench services`);
  return `10.96.${k >> 8}.${k & 255}`;
}

/** Pod addresses from 10.244.0.1 on (10.244.0.0/14 holds the 100k endpoints of the big run). */
function endpointIP(p: number): string {
  const k = p + 1;
  return `10.${244 + (k >>> 16)}.${(k >>> 8) & 255}.${k & 255}`;
}

export function externalName(i: number): string {
  return `www-${i}.${EXTERNAL_ZONE}`;
}

function externalIP(i: number): string {
  // TEST-NET-2 and -3 (RFC 5737): answers only, nothing is ever sent there.
  return i < 254 ? `198.51.100.${i + 1}` : `203.0.113.${(i - 254) % 254 + 1}`;
}

/** A small, seeded PRNG (mulberry32): the same shuffle in every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const next = random(seed);
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// ---- the manifest directory -------------------------------------------------------------

const PER_FILE = 1000;

function serviceYaml(name: string, namespace: string, ip: string, ports: string): string {
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  clusterIP: ${ip}
  ports: [${ports}]
`;
}

function sliceYaml(d: DnsData, i: number): string {
  const endpoints: string[] = [];
  for (let j = 0; j < d.endpointsPerService; j++) {
    endpoints.push(`  - addresses: [${endpointIP(i * d.endpointsPerService + j)}]\n    conditions: { ready: true }\n    nodeName: node-${j % 20}\n`);
  }
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${serviceName(i)}-abcde
  namespace: ${serviceNamespace(i)}
  labels: { kubernetes.io/service-name: ${serviceName(i)} }
addressType: IPv4
endpoints:${endpoints.length === 0 ? ' []\n' : `\n${endpoints.join('')}`}ports: [{ name: http, port: 8080, protocol: TCP }]
`;
}

/** The Services and EndpointSlices, 1000 Services to a file (with the `kubernetes` and `kube-dns` Services). */
export function writeManifests(dir: string, d: DnsData): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'cluster.yaml'), [
    serviceYaml('kubernetes', 'default', '10.96.0.1', '{ name: https, port: 443, protocol: TCP, targetPort: 6443 }'),
    serviceYaml('kube-dns', 'kube-system', DNS_SERVICE_IP, '{ name: dns, port: 53, protocol: UDP }, { name: dns-tcp, port: 53, protocol: TCP }'),
  ].join('---\n'));
  for (let f = 0; f * PER_FILE < d.services; f++) {
    const docs: string[] = [];
    for (let i = f * PER_FILE; i < Math.min(d.services, (f + 1) * PER_FILE); i++) {
      docs.push(serviceYaml(serviceName(i), serviceNamespace(i), clusterIP(i), '{ name: http, port: 80, protocol: TCP, targetPort: 8080 }'), sliceYaml(d, i));
    }
    writeFileSync(join(dir, `services-${String(f).padStart(3, '0')}.yaml`), docs.join('---\n'));
  }
}

// ---- the zone files ---------------------------------------------------------------------

function soa(ttl: number): string {
  // CoreDNS's kubernetes plugin: mname ns.dns.<zone>, rname hostmaster.<zone>, refresh
  // 7200, retry 1800, expire 86400, minimum = the plugin's ttl.
  return `@ IN SOA ns.dns.${ZONE}. hostmaster.${ZONE}. 1 7200 1800 86400 ${ttl}\n@ IN NS ns.dns.${ZONE}.\n`;
}

function reversed(ip: string): string {
  return ip.split('.').reverse().join('.');
}

/** cluster.local, 10.in-addr.arpa (the PTRs of the cluster IPs) and the external zone; returns the file names. */
export function writeZones(dir: string, d: DnsData): { zone: string; file: string }[] {
  mkdirSync(dir, { recursive: true });
  const forward: string[] = [`$ORIGIN ${ZONE}.\n$TTL ${d.ttl}\n`, soa(d.ttl), `ns.dns IN A ${DNS_SERVICE_IP}\n`, 'dns-version IN TXT "1.1.0"\n'];
  const reverse: string[] = [`$ORIGIN 10.in-addr.arpa.\n$TTL ${d.ttl}\n`, soa(d.ttl)];
  const add = (name: string, ns: string, ip: string, port: string, number: number, proto: string): void => {
    const owner = `${name}.${ns}.svc`;
    forward.push(`${owner} IN A ${ip}\n_${port}._${proto}.${owner} IN SRV 0 100 ${number} ${owner}.${ZONE}.\n`);
    reverse.push(`${reversed(ip).replace(/\.10$/, '')} IN PTR ${owner}.${ZONE}.\n`);
  };
  add('kubernetes', 'default', '10.96.0.1', 'https', 443, 'tcp');
  forward.push(`kube-dns.kube-system.svc IN A ${DNS_SERVICE_IP}\n_dns._udp.kube-dns.kube-system.svc IN SRV 0 100 53 kube-dns.kube-system.svc.${ZONE}.\n_dns-tcp._tcp.kube-dns.kube-system.svc IN SRV 0 100 53 kube-dns.kube-system.svc.${ZONE}.\n`);
  reverse.push(`${reversed(DNS_SERVICE_IP).replace(/\.10$/, '')} IN PTR kube-dns.kube-system.svc.${ZONE}.\n`);
  for (let i = 0; i < d.services; i++) add(serviceName(i), serviceNamespace(i), clusterIP(i), 'http', 80, 'tcp');
  const external: string[] = [`$ORIGIN ${EXTERNAL_ZONE}.\n$TTL 300\n@ IN SOA ns.${EXTERNAL_ZONE}. hostmaster.${EXTERNAL_ZONE}. 1 7200 1800 86400 60\n@ IN NS ns\nns IN A 198.51.100.254\n`];
  for (let i = 0; i < d.externalNames; i++) external.push(`www-${i} IN A ${externalIP(i)}\n`);
  const zones = [
    { zone: ZONE, file: 'cluster.local.zone', text: forward },
    { zone: '10.in-addr.arpa', file: '10.in-addr.arpa.zone', text: reverse },
    { zone: EXTERNAL_ZONE, file: 'example.test.zone', text: external },
  ];
  for (const z of zones) writeFileSync(join(dir, z.file), z.text.join(''));
  return zones.map(({ zone, file }) => ({ zone, file }));
}

// ---- the query files (dnsperf -d: "name type" per line) ---------------------------------

export type Mix = 'cluster' | 'search' | 'external';
export const MIXES: Mix[] = ['cluster', 'search', 'external'];

/**
 * cluster: the A record of every Service, once each, shuffled.
 * search: what glibc's resolver sends for `getent hosts svc-NNNNN.ns-K.svc.cluster.local`
 *   from a ClusterFirst pod (ndots:5, the name has 4 dots): the name with each search
 *   domain appended, in order, each NXDOMAIN, then the name itself: 3 misses per hit,
 *   the groups in shuffled order, each group in the order a client sends it.
 * external: `www-I.example.test` A (2 dots: a real client would send 3 search-path
 *   misses first; this mix is the cached answer alone).
 */
export function queryLines(mix: Mix, d: DnsData): string[] {
  const ids = shuffled(Array.from({ length: mix === 'external' ? d.externalNames : d.services }, (_, i) => i), mix === 'search' ? 2 : mix === 'cluster' ? 1 : 3);
  switch (mix) {
    case 'cluster': return ids.map((i) => `${serviceFqdn(i)} A`);
    case 'search': return ids.flatMap((i) => [...SEARCH.map((s) => `${serviceFqdn(i)}.${s} A`), `${serviceFqdn(i)} A`]);
    case 'external': return ids.map((i) => `${externalName(i)} A`);
  }
}

export function writeQueries(dir: string, d: DnsData): Record<Mix, string> {
  mkdirSync(dir, { recursive: true });
  const files = {} as Record<Mix, string>;
  for (const mix of MIXES) {
    files[mix] = join(dir, `${mix}.txt`);
    writeFileSync(files[mix], `${queryLines(mix, d).join('\n')}\n`);
  }
  return files;
}

/** The response codes a correct server gives each mix, as fractions (checked against dnsperf's counts). */
export function expectedRcodes(mix: Mix): Record<string, number> {
  return mix === 'search' ? { NXDOMAIN: 0.75, NOERROR: 0.25 } : { NOERROR: 1 };
}

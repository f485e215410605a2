// Pod, Node and Namespace (v1) validation: the fields the endpoints controller and the
// lab use (labels, node, container ports, readiness, pod IP, zone, node addresses).
import { isIP } from 'node:net';
import { Fields, checkIpv4, checkIpv6 } from '../config/fields.ts';
import { parseCidr, parseCidr6 } from '../wire/address.ts';
import { checkIp, checkPortOrName, checkProtocol, ipFamilyOf, isDns1123Label, isDns1123Subdomain, isIanaServiceName } from './fields.ts';
import { DNS_POLICIES, Label, type Container, type DnsPolicy, type EnvVar, type PodDnsConfig, type ContainerPort, type NamespaceObject, type NodeAddress, type NodeObject, type ObjectMeta, type Origin, type PodObject, type Probe } from './objects.ts';

export function validatePod(top: Fields, metadata: ObjectMeta, origin: Origin): PodObject {
  const spec = top.map('spec', true) ?? new Fields({}, 'spec', top.problems);
  const nodeName = spec.string('nodeName');
  if (nodeName !== '' && !isDns1123Subdomain(nodeName)) spec.fail('nodeName', `${JSON.stringify(nodeName)} is not a valid node name`);
  const [hostname, subdomain] = ['hostname', 'subdomain'].map((key) => {
    const name = spec.string(key);
    if (name !== '' && !isDns1123Label(name)) spec.fail(key, `${JSON.stringify(name)} is not a valid ${key} (up to 63 lower-case letters, digits and "-")`);
    return name;
  }) as [string, string];
  const portNames = new Map<string, string>();
  const containers = spec.maps('containers', true).map((c) => readContainer(c, portNames));
  const dns = readPodDns(spec);

  const status = top.map('status');
  let podIP = '';
  let podIPs: string[] = [];
  let ready = false;
  let phase = '';
  if (status !== undefined) {
    phase = status.string('phase');
    if (status.has('podIP')) podIP = checkIp(status.value.podIP, status.pathOf('podIP'), status.problems) ?? '';
    podIPs = readPodIPs(status, podIP);
    if (podIP === '' && podIPs.length > 0) podIP = podIPs[0]!;
    for (const condition of status.maps('conditions')) {
      const type = condition.string('type', true);
      const value = condition.choice('status', ['True', 'False', 'Unknown'] as const, 'Unknown');
      if (type === 'Ready') ready = value === 'True';
    }
  }
  return { kind: 'Pod', origin, metadata, spec: { nodeName, hostname, subdomain, containers, ...dns }, status: { phase, podIP, podIPs, ready } };
}

/**
 * status.podIPs (validatePodIPs): at most one address per family, the first equal to
 * podIP. Absent: [podIP] (a writer from before dual-stack set podIP only).
 */
function readPodIPs(status: Fields, podIP: string): string[] {
  const items = status.maps('podIPs');
  if (items.length === 0) return podIP === '' ? [] : [podIP];
  const ips: string[] = [];
  for (const item of items) {
    const ip = checkIp(item.value.ip, item.pathOf('ip'), item.problems);
    if (ip === undefined) continue;
    if (ips.some((other) => ipFamilyOf(other) === ipFamilyOf(ip))) item.fail('ip', `${JSON.stringify(ip)}: may specify no more than one IP for each IP family`);
    else ips.push(ip);
  }
  if (ips.length > 0 && podIP !== '' && ips[0] !== podIP) status.fail('podIPs', `podIPs[0] (${ips[0]}) must match podIP (${podIP})`);
  return ips;
}

/**
 * Limits of core/v1 PodDNSConfig (pkg/apis/core/validation: MaxDNSNameservers and the
 * ExpandedDNSConfig limits, the only ones since Kubernetes 1.28): what glibc and musl
 * read of a resolv.conf, and what the kubelet cuts a composed one down to.
 */
export const MAX_DNS_NAMESERVERS = 3;
export const MAX_DNS_SEARCH_PATHS = 32;
export const MAX_DNS_SEARCH_LIST_CHARS = 2048;

/**
 * A Pod spec's DNS and environment fields, checked as the API server checks them
 * (validateDNSPolicy, validatePodDNSConfig): the messages carry its wording. The lab's
 * topology reads its pods' fields with this too.
 */
export function readPodDns(spec: Fields): { dnsPolicy: DnsPolicy; dnsConfig: PodDnsConfig | null; enableServiceLinks: boolean; hostNetwork: boolean } {
  const dnsPolicy = spec.choice('dnsPolicy', DNS_POLICIES, 'ClusterFirst');
  const config = spec.map('dnsConfig');
  let dnsConfig: PodDnsConfig | null = null;
  let listedNameservers = 0;
  if (config !== undefined) {
    const nameservers: string[] = [];
    const listed = config.list('nameservers');
    listedNameservers = listed.length;
    for (const item of listed) {
      if (typeof item.value === 'string' && isIP(item.value) !== 0) nameservers.push(item.value);
      else config.problems.add(item.path, `${JSON.stringify(item.value)} must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`);
    }
    if (nameservers.length > MAX_DNS_NAMESERVERS) config.fail('nameservers', `must not have more than ${MAX_DNS_NAMESERVERS} nameservers`);
    const searches = config.strings('searches');
    if (searches.length > MAX_DNS_SEARCH_PATHS) config.fail('searches', `must not have more than ${MAX_DNS_SEARCH_PATHS} search paths`);
    if (searches.join(' ').length > MAX_DNS_SEARCH_LIST_CHARS) config.fail('searches', `must not have more than ${MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list`);
    searches.forEach((search, i) => {
      // A trailing dot is fine (an absolute name).
      if (!isDns1123Subdomain(search.endsWith('.') ? search.slice(0, -1) : search)) {
        config.problems.add(`${config.pathOf('searches')}[${i}]`, `${JSON.stringify(search)} must be a lowercase RFC 1123 subdomain (lower-case letters, digits, "-" and ".")`);
      }
    });
    const options = config.maps('options').map((o) => {
      const name = o.string('name');
      if (name === '') o.fail('name', 'must not be empty');
      return { name, value: o.has('value') ? o.string('value') : null };
    });
    dnsConfig = { nameservers, searches, options };
  }
  if (dnsPolicy === 'None') {
    if (dnsConfig === null) spec.fail('dnsConfig', 'required when dnsPolicy is None: must provide `dnsConfig` when `dnsPolicy` is None');
    else if (listedNameservers === 0) spec.problems.add(`${spec.pathOf('dnsConfig')}.nameservers`, 'must provide at least one DNS nameserver when `dnsPolicy` is None');
  }
  return { dnsPolicy, dnsConfig, enableServiceLinks: spec.bool('enableServiceLinks', true), hostNetwork: spec.bool('hostNetwork', false) };
}

function readContainer(c: Fields, portNames: Map<string, string>): Container {
  const name = c.string('name', true);
  if (name !== '' && !isDns1123Label(name)) c.fail('name', `${JSON.stringify(name)} is not a valid container name (lower-case letters, digits and "-")`);
  const ports: ContainerPort[] = c.maps('ports').map((p) => {
    const portName = p.string('name');
    if (portName !== '') {
      // Service targetPorts refer to these names, so they follow the IANA service-name rules and are unique per pod.
      if (!isIanaServiceName(portName)) p.fail('name', `${JSON.stringify(portName)} is not a valid port name (up to 15 lower-case letters, digits and "-", with at least one letter)`);
      else if (portNames.has(portName)) p.fail('name', `${JSON.stringify(portName)} is already used by ${portNames.get(portName)}`);
      portNames.set(portName, p.path);
    }
    return { name: portName, containerPort: p.int('containerPort', 1, 65535, 0, true), protocol: checkProtocol(p, 'protocol') };
  });
  const probe = c.map('readinessProbe');
  return {
    name,
    ports,
    env: readEnv(c),
    command: c.has('command') ? c.strings('command') : null,
    args: c.strings('args'),
    readinessProbe: probe === undefined ? null : readProbe(probe),
  };
}

/** IsEnvVarName (apimachinery): letters, digits, "_", "-", ".", not starting with a digit. */
const ENV_VAR_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/**
 * A container's env: literal values and downward-API fieldRefs; entries whose value
 * comes from elsewhere (configMapKeyRef, secretKeyRef, resourceFieldRef) are valid
 * but left out, since no Tapir reader has those objects.
 */
function readEnv(c: Fields): EnvVar[] {
  const env: EnvVar[] = [];
  for (const e of c.maps('env')) {
    const name = e.string('name', true);
    if (name !== '' && !ENV_VAR_NAME.test(name)) e.fail('name', `${JSON.stringify(name)} is not a valid environment variable name (letters, digits, "_", "-" and ".", not starting with a digit)`);
    const value = e.string('value');
    const from = e.map('valueFrom');
    const fieldRef = from?.map('fieldRef');
    if (value !== '' && from !== undefined) e.fail('valueFrom', 'may not be specified when `value` is not empty');
    if (fieldRef !== undefined) env.push({ name, value: '', fieldPath: fieldRef.string('fieldPath', true) });
    else if (from === undefined) env.push({ name, value, fieldPath: '' });
  }
  return env;
}

function readProbe(f: Fields): Probe {
  const tcp = f.map('tcpSocket');
  const http = f.map('httpGet');
  const exec = f.map('exec');
  const handlers = [tcp, http, exec].filter((h) => h !== undefined).length;
  if (handlers !== 1) f.problems.add(f.path, 'must have exactly one of tcpSocket, httpGet, exec');
  const port = (h: Fields): number | string => (h.has('port') ? checkPortOrName(h.value.port, h.pathOf('port'), h.problems) ?? 0 : (h.missing('port'), 0));
  return {
    tcpSocket: tcp === undefined ? null : { port: port(tcp) },
    httpGet: http === undefined ? null : { port: port(http), path: http.string('path') || '/' },
    exec: exec === undefined ? null : { command: exec.strings('command') },
    // Kubernetes defaults (core/v1 Probe).
    initialDelaySeconds: f.int('initialDelaySeconds', 0, 86400, 0),
    periodSeconds: f.int('periodSeconds', 1, 86400, 10),
    timeoutSeconds: f.int('timeoutSeconds', 1, 86400, 1),
    successThreshold: f.int('successThreshold', 1, 1000, 1),
    failureThreshold: f.int('failureThreshold', 1, 1000, 3),
  };
}

export function validateNode(top: Fields, metadata: ObjectMeta, origin: Origin): NodeObject {
  const addresses: NodeAddress[] = [];
  const addresses6: NodeAddress[] = [];
  for (const a of top.map('status')?.maps('addresses') ?? []) {
    const type = a.string('type', true);
    const address = a.string('address', true);
    // Dual-stack nodes also list IPv6 addresses: kept apart (an IPv6 underlay's tunnels end there).
    if (address.includes(':')) {
      if ((type === 'InternalIP' || type === 'ExternalIP') && checkIpv6(address, a.pathOf('address'), a.problems) !== undefined) addresses6.push({ type, address });
      continue;
    }
    if ((type === 'InternalIP' || type === 'ExternalIP') && address !== '' && !checkIpv4(address, a.pathOf('address'), a.problems)) continue;
    addresses.push({ type, address });
  }
  const spec = top.map('spec');
  // spec.podCIDRs (dual-stack) supersedes spec.podCIDR; IPv4 ones only, as for addresses.
  const cidrs = spec?.has('podCIDRs') === true ? spec.strings('podCIDRs') : (spec?.has('podCIDR') === true ? [spec.string('podCIDR')] : []);
  const podCIDRs = cidrs.filter((c) => c !== '' && !c.includes(':'));
  for (const c of podCIDRs) if (parseCidr(c) === undefined) spec!.fail(spec!.has('podCIDRs') ? 'podCIDRs' : 'podCIDR', `${JSON.stringify(c)} is not an IPv4 CIDR`);
  const podCIDRv6 = cidrs.find((c) => c.includes(':'));
  if (podCIDRv6 !== undefined && parseCidr6(podCIDRv6) === undefined) spec!.fail(spec!.has('podCIDRs') ? 'podCIDRs' : 'podCIDR', `${JSON.stringify(podCIDRv6)} is not an IPv6 CIDR`);
  const taints = spec?.maps('taints').map((t) => t.string('key', true)) ?? [];
  const node: NodeObject = { kind: 'Node', origin, metadata, zone: metadata.labels[Label.TOPOLOGY_ZONE] ?? '', addresses, podCIDRs, taints };
  if (podCIDRv6 !== undefined && parseCidr6(podCIDRv6) !== undefined) node.podCIDRv6 = podCIDRv6;
  if (addresses6.length > 0) node.addresses6 = addresses6;
  return node;
}

export function validateNamespace(metadata: ObjectMeta, origin: Origin): NamespaceObject {
  return { kind: 'Namespace', origin, metadata };
}

// Service (v1) validation: the checks the API server makes on the fields kube-proxy
// uses, with its defaults applied. Either family and dual-stack (ipFamilies,
// ipFamilyPolicy, clusterIPs) as ValidateServiceClusterIPsRelatedFields checks them;
// what depends on the cluster's service CIDRs is settled by ip-families.ts. SCTP is
// refused with a clear message.
import { Fields } from '../config/fields.ts';
import { kept, ListInterner } from '../config/compact.ts';
import { checkIp, checkPortOrName, checkProtocol, cidrFamilyOf, isDns1123Label, isDns1123Subdomain, isLabelValue, isQualifiedName } from './fields.ts';
import { familyOfValid } from './ip-families.ts';
import { Annotation, IP_FAMILIES, IP_FAMILY_POLICIES, type IpFamily, type IpFamilyPolicy, type LoadBalancerIngress, type ObjectMeta, type Origin, type ServiceObject, type ServicePort, type ServiceType } from './objects.ts';

const TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const TRAFFIC_DISTRIBUTIONS = ['PreferClose', 'PreferSameZone', 'PreferSameNode'] as const;
const LB_ALGORITHMS = ['random', 'maglev'];
/** kube-apiserver's default for sessionAffinityConfig.clientIP.timeoutSeconds (3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
/** The API's upper bound for the affinity timeout (one day). */
const MAX_AFFINITY_TIMEOUT_SECONDS = 86400;

/** Port lists, one each however many Services have the same (most have one port, 80 to 8080 say). */
const PORT_LISTS = new ListInterner<ServicePort>(4_096);

export function validateService(top: Fields, metadata: ObjectMeta, origin: Origin): ServiceObject {
  const spec = top.map('spec', true) ?? new Fields({}, 'spec', top.problems);
  const type = spec.choice('type', TYPES, 'ClusterIP');
  const { clusterIPs, ipFamilies, ipFamilyPolicy } = readClusterIPs(spec, type);
  const clusterIP = clusterIPs[0] ?? '';
  const headless = clusterIP === 'None';
  const externalIPs: string[] = [];
  for (const item of spec.list('externalIPs')) {
    const ip = checkIp(item.value, item.path, spec.problems);
    if (ip !== undefined) externalIPs.push(ip);
  }
  const externallyAccessible = type === 'NodePort' || type === 'LoadBalancer' || (type === 'ClusterIP' && externalIPs.length > 0);

  let externalName = '';
  if (type === 'ExternalName') {
    externalName = spec.string('externalName', true).replace(/\.$/, '');
    if (externalName !== '' && !isDns1123Subdomain(externalName)) spec.fail('externalName', `${JSON.stringify(externalName)} is not a valid DNS name`);
  } else if (spec.has('externalName')) {
    spec.fail('externalName', 'may only be set when type is ExternalName');
  }

  const ports = readPorts(spec, type, headless);
  const selectorMap = spec.stringMap('selector', isQualifiedName, isLabelValue);
  const selector = Object.keys(selectorMap).length === 0 ? null : selectorMap;

  const sessionAffinity = spec.choice('sessionAffinity', ['None', 'ClientIP'] as const, 'None');
  let affinityTimeoutSeconds = 0;
  const affinityConfig = spec.map('sessionAffinityConfig');
  if (sessionAffinity === 'ClientIP') {
    const clientIP = affinityConfig?.map('clientIP');
    affinityTimeoutSeconds = clientIP?.int('timeoutSeconds', 1, MAX_AFFINITY_TIMEOUT_SECONDS, DEFAULT_AFFINITY_TIMEOUT_SECONDS) ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  } else if (affinityConfig !== undefined) {
    spec.fail('sessionAffinityConfig', 'may only be set when sessionAffinity is ClientIP');
  }

  let externalTrafficPolicy: '' | 'Cluster' | 'Local' = '';
  if (externallyAccessible) externalTrafficPolicy = spec.choice('externalTrafficPolicy', ['Cluster', 'Local'] as const, 'Cluster');
  else if (spec.has('externalTrafficPolicy')) spec.fail('externalTrafficPolicy', 'may only be set on services of type NodePort or LoadBalancer, or with externalIPs');
  const internalTrafficPolicy = spec.choice('internalTrafficPolicy', ['Cluster', 'Local'] as const, 'Cluster');
  const trafficDistribution = spec.choice<string>('trafficDistribution', TRAFFIC_DISTRIBUTIONS, '');

  const loadBalancerSourceRanges: string[] = [];
  const rangeItems = spec.list('loadBalancerSourceRanges');
  if (rangeItems.length > 0 && type !== 'LoadBalancer') spec.fail('loadBalancerSourceRanges', 'may only be used when type is LoadBalancer');
  for (const item of rangeItems) {
    const text = typeof item.value === 'string' ? item.value.trim() : '';
    if (cidrFamilyOf(text) === undefined) spec.problems.add(item.path, `${JSON.stringify(item.value)} is not a CIDR such as 203.0.113.0/24 or 2001:db8::/64`);
    else loadBalancerSourceRanges.push(text);
  }

  const healthCheckNodePort = spec.int('healthCheckNodePort', 1, 65535, 0);
  if (healthCheckNodePort !== 0 && !(type === 'LoadBalancer' && externalTrafficPolicy === 'Local')) {
    spec.fail('healthCheckNodePort', 'may only be set when type is LoadBalancer and externalTrafficPolicy is Local');
  }
  if (spec.has('allocateLoadBalancerNodePorts') && type !== 'LoadBalancer') spec.fail('allocateLoadBalancerNodePorts', 'may only be used when type is LoadBalancer');
  const allocateLoadBalancerNodePorts = spec.bool('allocateLoadBalancerNodePorts', true);

  const lbAlgorithm = metadata.annotations[Annotation.LB_ALGORITHM];
  if (lbAlgorithm !== undefined && !LB_ALGORITHMS.includes(lbAlgorithm)) {
    top.problems.add(`metadata.annotations[${JSON.stringify(Annotation.LB_ALGORITHM)}]`, `${JSON.stringify(lbAlgorithm)} is not one of ${LB_ALGORITHMS.join(', ')}`);
  }

  return {
    kind: 'Service',
    origin,
    metadata,
    spec: {
      type, clusterIP, clusterIPs: kept(clusterIPs), ipFamilies: kept(ipFamilies), ipFamilyPolicy, ports: PORT_LISTS.keep(ports), selector, sessionAffinity, affinityTimeoutSeconds,
      externalTrafficPolicy, internalTrafficPolicy, trafficDistribution, externalIPs: kept(externalIPs),
      loadBalancerSourceRanges: kept(loadBalancerSourceRanges), healthCheckNodePort, externalName,
      publishNotReadyAddresses: spec.bool('publishNotReadyAddresses', false),
      allocateLoadBalancerNodePorts: type === 'LoadBalancer' && allocateLoadBalancerNodePorts,
    },
    status: { loadBalancerIngress: kept(readIngress(top)) },
  };
}

interface FamilyFields {
  clusterIPs: string[];
  ipFamilies: IpFamily[];
  ipFamilyPolicy: '' | IpFamilyPolicy;
}

/**
 * clusterIP, clusterIPs, ipFamilies and ipFamilyPolicy, checked as kube-apiserver's
 * ValidateServiceClusterIPsRelatedFields does, after its strategy synced clusterIP and
 * clusterIPs (either one given fills the other). The result's clusterIPs are canonical.
 */
function readClusterIPs(spec: Fields, type: ServiceType): FamilyFields {
  const none: FamilyFields = { clusterIPs: [], ipFamilies: [], ipFamilyPolicy: '' };
  const clusterIP = spec.string('clusterIP');
  const items = spec.list('clusterIPs');
  const raw: string[] = [];
  for (const item of items) {
    if (typeof item.value === 'string') raw.push(item.value);
    else spec.problems.add(item.path, `must be a string, not ${item.value === null ? 'null' : typeof item.value}`);
  }
  if (raw.length !== items.length) return none;
  if (type === 'ExternalName') {
    if (clusterIP !== '') spec.fail('clusterIP', 'must be empty when type is ExternalName');
    if (raw.length > 0) spec.fail('clusterIPs', 'may not be set when type is ExternalName');
    // kube-apiserver wipes ipFamilies and ipFamilyPolicy of an ExternalName Service
    // (they describe cluster IPs, which it has none of); read them only for their form.
    spec.strings('ipFamilies');
    spec.string('ipFamilyPolicy');
    return none;
  }
  if (clusterIP !== '' && raw.length > 0 && raw[0] !== clusterIP) {
    spec.fail('clusterIPs', `${JSON.stringify(raw)}: first value must match clusterIP (${clusterIP})`);
    return none;
  }
  const requested = raw.length > 0 ? raw : clusterIP === '' ? [] : [clusterIP];
  const where = (i: number): string => (raw.length > 0 ? `${spec.pathOf('clusterIPs')}[${i}]` : spec.pathOf('clusterIP'));

  const ipFamilies: IpFamily[] = [];
  for (const item of spec.list('ipFamilies')) {
    const family = item.value;
    if (typeof family !== 'string' || !(IP_FAMILIES as readonly string[]).includes(family)) {
      spec.problems.add(item.path, `Unsupported value: ${JSON.stringify(family)}: supported values: "IPv4", "IPv6"`);
    } else if (ipFamilies.includes(family as IpFamily)) {
      spec.problems.add(item.path, `Duplicate value: ${JSON.stringify(family)} (a Service has at most one address per family)`);
    } else ipFamilies.push(family as IpFamily);
  }
  const policyText = spec.string('ipFamilyPolicy');
  let ipFamilyPolicy: '' | IpFamilyPolicy = '';
  if (policyText !== '') {
    if ((IP_FAMILY_POLICIES as readonly string[]).includes(policyText)) ipFamilyPolicy = policyText as IpFamilyPolicy;
    else spec.fail('ipFamilyPolicy', `Unsupported value: ${JSON.stringify(policyText)}: supported values: ${IP_FAMILY_POLICIES.map((p) => JSON.stringify(p)).join(', ')}`);
  }

  if (requested[0] === 'None') {
    if (requested.length > 1) spec.fail('clusterIPs', `${JSON.stringify(requested)}: 'None' must be the first and only value`);
    if (type !== 'ClusterIP') spec.fail('clusterIP', `may not be None (headless) when type is ${type}`);
    return { clusterIPs: ['None'], ipFamilies, ipFamilyPolicy };
  }
  const clusterIPs: string[] = [];
  for (const [i, text] of requested.entries()) {
    const ip = checkIp(text, where(i), spec.problems);
    if (ip !== undefined) clusterIPs.push(ip);
  }
  if (clusterIPs.length !== requested.length) return { clusterIPs: [], ipFamilies, ipFamilyPolicy };
  if (clusterIPs.length > 2) spec.fail('clusterIPs', `${JSON.stringify(requested)}: may only hold up to 2 values`);
  else if (clusterIPs.length === 2 && familyOfValid(clusterIPs[0]!) === familyOfValid(clusterIPs[1]!)) {
    spec.fail('clusterIPs', `${JSON.stringify(requested)}: may specify no more than one IP for each IP family`);
  }
  clusterIPs.forEach((ip, i) => {
    const family = ipFamilies[i];
    if (family !== undefined && familyOfValid(ip) !== family) spec.problems.add(where(i), `${JSON.stringify(requested[i])}: expected an ${family} value as indicated by \`ipFamilies[${i}]\``);
  });
  // SingleStack with two families or addresses is refused when the families are settled
  // (ip-families.ts): on update kube-apiserver first trims the stored second family.
  return { clusterIPs, ipFamilies, ipFamilyPolicy };
}

function readPorts(spec: Fields, type: ServiceType, headless: boolean): ServicePort[] {
  // Headless and ExternalName services may have no ports; everything else needs one.
  const items = spec.maps('ports', !headless && type !== 'ExternalName');
  const ports: ServicePort[] = [];
  const seenNames = new Map<string, number>();
  const seenPorts = new Map<string, number>();
  const seenNodePorts = new Map<string, number>();
  items.forEach((f, i) => {
    const name = f.string('name');
    if (name === '' && items.length > 1) f.fail('name', 'required when a service has more than one port');
    else if (name !== '' && !isDns1123Label(name)) f.fail('name', `${JSON.stringify(name)} is not a valid port name (lower-case letters, digits and "-")`);
    else if (name !== '' && seenNames.has(name)) f.fail('name', `${JSON.stringify(name)} is already used by spec.ports[${seenNames.get(name)}]`);
    seenNames.set(name, i);
    const protocol = checkProtocol(f, 'protocol');
    const port = f.int('port', 1, 65535, 0, true);
    let targetPort: number | string = port;
    if (f.has('targetPort')) targetPort = checkPortOrName(f.value.targetPort, f.pathOf('targetPort'), f.problems) ?? port;
    const nodePort = f.int('nodePort', 1, 65535, 0);
    if (nodePort !== 0 && type !== 'NodePort' && type !== 'LoadBalancer') f.fail('nodePort', `may not be used when type is ${type}`);
    const portKey = `${port}/${protocol}`;
    if (port !== 0 && seenPorts.has(portKey)) f.problems.add(f.path, `duplicate port ${portKey} (also spec.ports[${seenPorts.get(portKey)}])`);
    seenPorts.set(portKey, i);
    const nodePortKey = `${nodePort}/${protocol}`;
    if (nodePort !== 0 && seenNodePorts.has(nodePortKey)) f.fail('nodePort', `duplicate node port ${nodePortKey} (also spec.ports[${seenNodePorts.get(nodePortKey)}])`);
    seenNodePorts.set(nodePortKey, i);
    ports.push({ name, protocol, port, targetPort, nodePort });
  });
  return ports;
}

function readIngress(top: Fields): LoadBalancerIngress[] {
  const ingress: LoadBalancerIngress[] = [];
  const items = top.map('status')?.map('loadBalancer')?.maps('ingress') ?? [];
  for (const f of items) {
    const ipMode = f.choice('ipMode', ['VIP', 'Proxy'] as const, 'VIP');
    // Hostname-only entries (some clouds) carry no address a node could serve.
    if (!f.has('ip')) continue;
    const ip = checkIp(f.value.ip, f.pathOf('ip'), f.problems);
    if (ip !== undefined) ingress.push({ ip, ipMode });
  }
  return ingress;
}

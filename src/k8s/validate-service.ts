// Service (v1) validation: the checks the API server makes on the fields kube-proxy
// uses, with its defaults applied. IPv4 only; SCTP is refused with a clear message.
import { parseCidr } from '../wire/address.ts';
import { Fields, checkIpv4 } from '../config/fields.ts';
import { checkPortOrName, checkProtocol, isDns1123Label, isDns1123Subdomain, isLabelValue, isQualifiedName } from './fields.ts';
import { Annotation, type LoadBalancerIngress, type ObjectMeta, type Origin, type ServiceObject, type ServicePort, type ServiceType } from './objects.ts';

const TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const TRAFFIC_DISTRIBUTIONS = ['PreferClose', 'PreferSameZone', 'PreferSameNode'] as const;
const LB_ALGORITHMS = ['random', 'maglev'];
/** kube-apiserver's default for sessionAffinityConfig.clientIP.timeoutSeconds (3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
/** The API's upper bound for the affinity timeout (one day). */
const MAX_AFFINITY_TIMEOUT_SECONDS = 86400;

export function validateService(top: Fields, metadata: ObjectMeta, origin: Origin): ServiceObject {
  const spec = top.map('spec', true) ?? new Fields({}, 'spec', top.problems);
  const type = spec.choice('type', TYPES, 'ClusterIP');
  const clusterIP = readClusterIP(spec, type);
  const headless = clusterIP === 'None';
  const externalIPs = spec.ipv4s('externalIPs');
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
    if (parseCidr(text) === undefined) spec.problems.add(item.path, `${JSON.stringify(item.value)} is not an IPv4 CIDR such as 203.0.113.0/24`);
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
      type, clusterIP, ports, selector, sessionAffinity, affinityTimeoutSeconds,
      externalTrafficPolicy, internalTrafficPolicy, trafficDistribution, externalIPs,
      loadBalancerSourceRanges, healthCheckNodePort, externalName,
      publishNotReadyAddresses: spec.bool('publishNotReadyAddresses', false),
      allocateLoadBalancerNodePorts: type === 'LoadBalancer' && allocateLoadBalancerNodePorts,
    },
    status: { loadBalancerIngress: readIngress(top) },
  };
}

function readClusterIP(spec: Fields, type: ServiceType): string {
  let clusterIP = spec.string('clusterIP');
  const clusterIPs = spec.list('clusterIPs');
  if (clusterIPs.length > 1) spec.fail('clusterIPs', 'dual-stack services are not supported (Tapir is IPv4 only)');
  const first = clusterIPs[0]?.value;
  if (typeof first === 'string') {
    if (clusterIP === '') clusterIP = first;
    else if (first !== clusterIP) spec.fail('clusterIPs', `clusterIPs[0] (${first}) must equal clusterIP (${clusterIP})`);
  }
  for (const family of spec.strings('ipFamilies')) {
    if (family !== 'IPv4') spec.fail('ipFamilies', `${JSON.stringify(family)} is not supported (Tapir is IPv4 only)`);
  }
  if (spec.string('ipFamilyPolicy') === 'RequireDualStack') spec.fail('ipFamilyPolicy', 'RequireDualStack is not supported (Tapir is IPv4 only)');
  if (type === 'ExternalName') {
    if (clusterIP !== '') spec.fail('clusterIP', 'must be empty when type is ExternalName');
    return '';
  }
  if (clusterIP === 'None') {
    if (type !== 'ClusterIP') spec.fail('clusterIP', `may not be None (headless) when type is ${type}`);
    return clusterIP;
  }
  if (clusterIP !== '' && !checkIpv4(clusterIP, spec.pathOf('clusterIP'), spec.problems)) return '';
  return clusterIP;
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
    if (checkIpv4(f.value.ip, f.pathOf('ip'), f.problems)) ingress.push({ ip: f.value.ip as string, ipMode });
  }
  return ingress;
}

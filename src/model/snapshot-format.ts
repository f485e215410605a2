// A ServiceSnapshot as readable JSON: dotted addresses, protocol names, one line per
// endpoint. For golden files, `tapir` debug output and traces; never on the hot path.
import { ipv4ToString } from '../wire/address.ts';
import { L4Protocol, type EndpointSpec, type ServicePortSpec, type ServiceSnapshot } from './service-snapshot.ts';

export interface ServicePortJson {
  key: string;
  protocol: string;
  clusterIP: string;
  port: number;
  nodePort: number;
  externalIPs: string[];
  loadBalancerIPs: string[];
  loadBalancerSourceRanges: string[];
  affinityTimeoutSeconds: number;
  lb: string;
  externalLocal: boolean;
  internalLocal: boolean;
  healthCheckNodePort: number;
  localReadyEndpoints: number;
  /** "ip:port node=N zone=Z [local] ready|serving|terminating..." */
  allEndpoints: string[];
  /** "ip:port" */
  clusterEndpoints: string[];
  externalEndpoints: string[];
}

export interface ServiceSnapshotJson {
  generation: number;
  nodePortAddresses: string[];
  ports: ServicePortJson[];
}

export function endpointToText(ep: EndpointSpec): string {
  const flags = [ep.local ? 'local' : '', ep.ready ? 'ready' : '', ep.serving ? 'serving' : '', ep.terminating ? 'terminating' : ''].filter((f) => f !== '');
  return `${ipv4ToString(ep.ip)}:${ep.port} node=${ep.nodeName || '-'} zone=${ep.zone || '-'} ${flags.join(' ') || 'not-serving'}`;
}

const address = (ep: EndpointSpec): string => `${ipv4ToString(ep.ip)}:${ep.port}`;

export function servicePortToJson(p: ServicePortSpec): ServicePortJson {
  return {
    key: p.key,
    protocol: p.protocol === L4Protocol.UDP ? 'UDP' : 'TCP',
    clusterIP: ipv4ToString(p.clusterIP),
    port: p.port,
    nodePort: p.nodePort,
    externalIPs: p.externalIPs.map(ipv4ToString),
    loadBalancerIPs: p.loadBalancerIPs.map(ipv4ToString),
    loadBalancerSourceRanges: p.loadBalancerSourceRanges.map(([network, length]) => `${ipv4ToString(network)}/${length}`),
    affinityTimeoutSeconds: p.affinityTimeoutSeconds,
    lb: p.lb,
    externalLocal: p.externalLocal,
    internalLocal: p.internalLocal,
    healthCheckNodePort: p.healthCheckNodePort,
    localReadyEndpoints: p.localReadyEndpoints,
    allEndpoints: p.allEndpoints.map(endpointToText),
    clusterEndpoints: p.clusterEndpoints.map(address),
    externalEndpoints: p.externalEndpoints.map(address),
  };
}

export function snapshotToJson(s: ServiceSnapshot): ServiceSnapshotJson {
  return { generation: s.generation, nodePortAddresses: s.nodePortAddresses.map(ipv4ToString), ports: s.ports.map(servicePortToJson) };
}

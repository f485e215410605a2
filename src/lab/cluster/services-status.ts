// The lab's Services as `lab status` shows them, computed from the manifest directory
// with the same control code every agent runs (allocation, endpoints controller), so
// what status prints is what the data planes program.
import { DEFAULT_NODE_PORT_RANGE, parseServiceCidrs } from '../../model/cluster-defaults.ts';
import { describeServices, type ServiceDescription } from '../../control/describe.ts';
import { ServiceProxyState } from '../../control/service-proxy-state.ts';
import { parseCidr } from '../../wire/address.ts';
import { loadObjects } from './manifests.ts';
import type { K8sObject } from '../../k8s/objects.ts';
import { labServiceCidrs, type LabState } from '../state.ts';

export function labServices(state: LabState, stored: { objects: K8sObject[]; problems: string[] } = loadObjects(state.manifests)): { services: ServiceDescription[]; problems: string[] } {
  const { objects, problems } = stored;
  // The descriptions do not depend on the node (no traffic-policy filtering); any will do.
  // A dual-stack lab: both service ranges, or its IPv6 and dual-stack Services would show as rejected (an IPv6-only lab: its IPv6 range).
  const cidrs = state.addressing.serviceCIDRv6 === undefined ? undefined : parseServiceCidrs(labServiceCidrs(state));
  const control = new ServiceProxyState({ name: state.nodes[0]?.name ?? '' }, {
    serviceCIDR: parseCidr(state.addressing.serviceCIDR)!, nodePortRange: DEFAULT_NODE_PORT_RANGE, ...(typeof cidrs === 'object' ? { serviceCIDRs: cidrs } : {}),
  });
  control.apply(objects.map((current) => ({ previous: undefined, current })));
  return { services: describeServices(control.sync().view), problems };
}

export function formatServices(services: ServiceDescription[]): string[] {
  const rows = services.map((s) => [
    `${s.namespace}/${s.name}`,
    s.type,
    s.clusterIP || '-',
    [...s.externalIPs, ...s.loadBalancerIPs].join(',') || '-',
    s.ports.map((p) => `${p.port}${p.nodePort === 0 ? '' : `:${p.nodePort}`}/${p.protocol}`).join(',') || '-',
    `${s.endpoints.filter((e) => e.ready).length}/${s.endpoints.length}${s.endpoints.some((e) => e.terminating) ? ` (${s.endpoints.filter((e) => e.terminating).length} terminating)` : ''}`,
  ]);
  const header = ['SERVICE', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'READY'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}

// /configz: the effective configuration, as kube-proxy serves it on its metrics address
// ({"kubeproxy.config.k8s.io": <KubeProxyConfiguration>}), with Tapir's own document
// beside it. Effective means after defaults and after what Tapir made of each field:
// the sync periods are the runner's intervals, conntrack the table's size and timeouts.
import { formatGoDuration } from '../config/duration.ts';
import { formatPortRange } from '../model/cluster-defaults.ts';
import { DEFAULT_TIMEOUTS } from '../tables/tcp-state.ts';
import { ipv4ToString, ipv6ToString } from '../wire/address.ts';
import type { AgentConfig } from './config.ts';
import { formatNodePortAddress, KUBE_PROXY_API_VERSION, KUBE_PROXY_KIND, type BindAddress } from './kube-proxy-config.ts';
import { TAPIR_API_VERSION, TAPIR_KIND } from './tapir-config.ts';

export function configz(c: AgentConfig, logging: { verbosity: number; format: string }): Record<string, unknown> {
  const kp = c.kubeProxy;
  const timeouts = { ...DEFAULT_TIMEOUTS, ...c.conntrackTimeouts };
  const seconds = (s: number): string => formatGoDuration(s * 1000);
  const sync = { syncPeriod: formatGoDuration(c.maxSyncIntervalMs), minSyncPeriod: formatGoDuration(c.minSyncIntervalMs) };
  return {
    'kubeproxy.config.k8s.io': {
      apiVersion: KUBE_PROXY_API_VERSION,
      kind: KUBE_PROXY_KIND,
      featureGates: kp.featureGates,
      clientConnection: kp.clientConnection,
      logging: { format: logging.format, verbosity: logging.verbosity },
      hostnameOverride: c.nodeName,
      bindAddress: ipv4ToString(c.underlayAddress),
      healthzBindAddress: bind(kp.healthzBindAddress),
      metricsBindAddress: bind(kp.metricsBindAddress),
      bindAddressHardFail: kp.bindAddressHardFail,
      mode: 'tapir',
      ...sync,
      iptables: { localhostNodePorts: kp.localhostNodePorts, ...sync },
      detectLocalMode: kp.detectLocalMode === '' ? 'ClusterCIDR' : kp.detectLocalMode,
      clusterCIDR: c.clusterCIDR.toString(),
      nodePortAddresses: kp.nodePortAddresses === undefined ? c.nodePortAddresses.map(ipv4ToString).map((a) => `${a}/32`) : kp.nodePortAddresses.map(formatNodePortAddress),
      conntrack: {
        maxPerCore: kp.conntrack.maxPerCore,
        min: kp.conntrack.min,
        tcpEstablishedTimeout: seconds(timeouts.tcpEstablished),
        tcpCloseWaitTimeout: seconds(timeouts.tcpCloseWait),
        // Tapir's conntrack follows TCP flags alone, as the kernel's with tcp_be_liberal.
        tcpBeLiberal: true,
        udpTimeout: seconds(timeouts.udp),
        udpStreamTimeout: seconds(timeouts.udpStream),
      },
      configSyncPeriod: formatGoDuration(kp.configSyncPeriodMs),
    },
    'tapir.dev': {
      apiVersion: TAPIR_API_VERSION,
      kind: TAPIR_KIND,
      nodeName: c.nodeName,
      underlay: {
        interface: c.underlayInterface, address: ipv4ToString(c.underlayAddress),
        ...(c.underlayFamily === 6 ? { family: 'ipv6', addressV6: ipv6ToString(c.vxlanAddress6!) } : {}),
      },
      podCIDR: c.podCIDR.toString(),
      clusterCIDR: c.clusterCIDR.toString(),
      serviceCIDR: c.serviceCIDR.toString(),
      vni: c.vni,
      mtu: c.mtu,
      stateDir: c.stateDir,
      controlSocket: c.controlSocket,
      hostTun: c.hostTun,
      nodes: c.nodes.map((n) => ({
        name: n.name, underlayIP: ipv4ToString(n.underlayIP), ...(n.underlayIP6 ? { underlayIPv6: ipv6ToString(n.underlayIP6) } : {}), podCIDR: n.podCIDR.toString(),
      })),
      manifests: c.manifests,
      zone: c.zone,
      nodePortAddresses: c.nodePortAddresses.map(ipv4ToString),
      nodePortRange: formatPortRange(c.nodePortRange),
      conntrackSize: c.conntrackSize,
      conntrackTimeouts: timeouts,
    },
  };
}

function bind(a: BindAddress | null): string {
  return a === null ? '' : `${a.host}:${a.port}`;
}

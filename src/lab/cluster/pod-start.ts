// What the lab does as the kubelet between a pod's sandbox (namespace and interface)
// and its containers: the resolv.conf and hosts file (src/lab/cluster/pod-dns.ts)
// written where `ip netns exec` mounts them for every process of the pod, and the environment: the
// downward-API-like POD_* variables the lab always gave, plus the Service variables
// (src/lab/cluster/service-env.ts) of the Services that exist right now, and each
// container command's own env (src/lab/cluster/container-env.ts). The same
// steps for every pod, whoever starts it: `lab up` (topology pods), `lab apply` in
// manifest mode, the node daemon's kubelet in cluster mode.
import { readFileSync } from 'node:fs';
import type { PodObject, ServiceObject } from '../../k8s/objects.ts';
import { CLUSTER_DNS_HOST_OFFSET, clusterDnsAddress, DEFAULT_CLUSTER_DOMAIN } from '../../model/cluster-defaults.ts';
import { ipv6ToString, parseCidr, parseCidr6 } from '../../wire/address.ts';
import { netnsResolvConfPath, writeNetnsFile, writeNetnsResolvConf } from '../network/netns-files.ts';
import { isIpv6Only, podPrimaryIP, type LabState, type NodeState, type PodState } from '../state.ts';
import { formatResolvConf, parseResolvConf, podHostsFile, podResolvConf, type KubeletDnsSettings, type ResolvConf } from './pod-dns.ts';
import { containerEnvironment } from './container-env.ts';
import { serviceEnvironment } from './service-env.ts';

/**
 * The cluster DNS Service's address in the lab: the tenth of its primary service CIDR
 * (10.96.0.10 by default; an IPv6-only lab's fd00:10:96::a, as kind's ipv6 clusters).
 */
export function labClusterDns(state: LabState): string {
  if (isIpv6Only(state)) return ipv6ToString(parseCidr6(state.addressing.serviceCIDRv6!, true)!.host(CLUSTER_DNS_HOST_OFFSET));
  return clusterDnsAddress(parseCidr(state.addressing.serviceCIDR)!);
}

/** The node's address a pod's status.hostIP names: its IPv6 underlay address in an IPv6-only lab. */
export function labHostIP(state: LabState, node: NodeState): string {
  return isIpv6Only(state) && node.underlayIP6 !== undefined ? node.underlayIP6 : node.underlayIP;
}

/** The node's resolv.conf as its kubelet reads it (--resolv-conf); empty when the lab wrote none (older labs). */
export function nodeResolvConf(node: NodeState): ResolvConf {
  try {
    return parseResolvConf(readFileSync(netnsResolvConfPath(node.netns), 'utf8'));
  } catch {
    return { nameservers: [], search: [], options: [] };
  }
}

/** The kubelet's DNS settings on `node`. */
export function kubeletDnsSettings(state: LabState, node: NodeState): KubeletDnsSettings {
  return { clusterDNS: [labClusterDns(state)], clusterDomain: DEFAULT_CLUSTER_DOMAIN, hostResolvConf: nodeResolvConf(node) };
}

/** Copies a Pod's DNS and service-link fields into the lab's record of it (before anything runs). */
export function podDnsFields(object: PodObject): Pick<PodState, 'dns' | 'enableServiceLinks'> {
  const { dnsPolicy, dnsConfig, hostNetwork, enableServiceLinks } = object.spec;
  return { dns: { policy: dnsPolicy, config: dnsConfig, hostNetwork, resolvConf: [], warnings: [] }, enableServiceLinks };
}

/**
 * Writes the pod's resolv.conf and sets its environment; call once its address is known
 * (POD_IP) and right before its workload starts. `services`: every Service of the
 * cluster as it stands now.
 */
export function preparePodStart(state: LabState, pod: PodState, services: readonly ServiceObject[]): void {
  const node = state.nodes.find((n) => n.name === pod.node)!;
  const dns = pod.dns ?? { policy: 'ClusterFirst', config: null, hostNetwork: false, resolvConf: [], warnings: [] };
  const { conf, warnings } = podResolvConf({ namespace: pod.namespace, dnsPolicy: dns.policy, dnsConfig: dns.config, hostNetwork: dns.hostNetwork }, kubeletDnsSettings(state, node));
  const text = formatResolvConf(conf);
  writeNetnsResolvConf(pod.netns, text);
  // The primary address (an IPv6-only lab's pods have only IPv6), as the kubelet's status.podIP.
  const podIP = podPrimaryIP(pod);
  if (podIP !== null) {
    writeNetnsFile(pod.netns, 'hosts', podHostsFile({ name: pod.name, namespace: pod.namespace, ip: podIP, hostname: pod.hostname ?? '', subdomain: pod.subdomain ?? '' }, DEFAULT_CLUSTER_DOMAIN));
  }
  pod.dns = { ...dns, resolvConf: text.trimEnd().split('\n').filter((l) => l !== ''), warnings };
  const serviceEnv = serviceEnvironment(services, pod.namespace, pod.enableServiceLinks ?? true);
  pod.env = { POD_NAME: pod.name, POD_NAMESPACE: pod.namespace, NODE_NAME: pod.node, POD_IP: podIP ?? '', ...serviceEnv };
  // A manifest container's command runs with its own env over the Service variables.
  if (pod.workload.type === 'containers') {
    const downward = { name: pod.name, namespace: pod.namespace, nodeName: pod.node, podIP: podIP ?? '', hostIP: labHostIP(state, node), labels: pod.labels };
    for (const command of pod.workload.commands) command.env = containerEnvironment(command.envSpec ?? [], downward, serviceEnv);
  }
}

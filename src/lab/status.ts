// `lab status`: the lab as state.json records it, plus whether its processes still run,
// the pods' readiness as the manifests say, and the Services (src/lab/cluster/services-status.ts).
import type { ServiceDescription } from '../control/describe.ts';
import type { IngressClassObject, IngressObject, PodObject } from '../k8s/objects.ts';
import { classifyIngress, DEFAULT_CLASS_NAME } from '../ingress/compile.ts';
import { INGRESS_NAMESPACE, INGRESS_SERVICE } from './cluster/ingress.ts';
import { readDaemonStatus, type DaemonStatus } from './node/daemons.ts';
import { loadObjects } from './cluster/manifests.ts';
import { isAlive } from './network/processes.ts';
import { formatServices, labServices } from './cluster/services-status.ts';
import { usesApi, type LabState, type PodState } from './state.ts';
import { apiObjectsOrProblem } from './cluster/api-apply.ts';
import { podProcessEnv } from './workloads.ts';

export interface LabStatus {
  name: string;
  dataplane: string;
  proxyMode: string;
  phase: string;
  /** The pods' and Services' address families: ipv4, dual or ipv6 (IPv6-only). */
  ipFamily: 'ipv4' | 'dual' | 'ipv6';
  manifests: string;
  createdAt: string;
  source: string;
  stateDir: string;
  addressing: LabState['addressing'];
  underlay: { netns: string; bridge: string; cidr: string };
  nodes: {
    name: string; zone: string; netns: string; underlayIP: string; podCIDR: string; gateway: string;
    /** Dual-stack labs: the node's IPv6 underlay address, pod range and gateway. */
    underlayIP6?: string; podCIDRv6?: string; gateway6?: string;
    /** The node agent: the one its daemon keeps running (restarts after it died). */
    agent: { pid: number | null; running: boolean; answers: boolean; restarts: number; controlSocket: string; log: string } | null;
    daemon: { pid: number | null; running: boolean; revision: number | null; announced: string[]; problems: string[]; log: string };
  }[];
  pods: {
    name: string; namespace: string; node: string; netns: string; ip: string | null; mac: string | null; labels: Record<string, string>;
    /**
     * Every address of the pod, as the Pod object's status.podIPs names them (else the
     * addresses the lab gave it: IPv4, IPv6 in a dual-stack lab; an IPv6-only lab's pods
     * have one IPv6 address, and `ip` is null).
     */
    ips: string[];
    ports: LabState['pods'][number]['ports']; workload: string; pid: number | null; running: boolean;
    /** The Pod's Ready condition in the manifests (written by the node daemon's prober). */
    ready: boolean;
    /** Deleted, within its grace period. */
    terminating: boolean;
    log: string;
    /** spec.dnsPolicy, and the lines of the resolv.conf the lab wrote for the pod (/etc/netns/<netns>/resolv.conf). */
    dnsPolicy: string;
    resolvConf: string[];
    /** The kubelet's DNSConfigForming warnings: nameservers or search domains cut to its limits. */
    dnsWarnings: string[];
    /** What the lab gave the pod's processes besides the lab command's own environment (POD_*, Service variables). */
    env: Record<string, string>;
  }[];
  /** The lab's upstream DNS server (NSD, zone example.test), null in labs made before it. */
  upstreamDns: { address: string; pid: number | null; running: boolean; log: string } | null;
  /** ip6: dual-stack labs' IPv6 underlay address of the client. */
  client: { name: string; netns: string; ip: string; ip6?: string } | null;
  services: ServiceDescription[];
  /**
   * Every Ingress: its class, hosts, and address (status.loadBalancer.ingress as the
   * controller wrote it in cluster mode; in manifest mode, where nothing writes status,
   * the controller Service's address for the Ingresses of class tapir).
   */
  ingresses: { name: string; namespace: string; className: string; hosts: string[]; addresses: string[]; served: boolean }[];
  /** Manifest files the agents would reject (written by hand into the directory). */
  manifestProblems: string[];
  /** No agent, daemon or node problem right now. */
  healthy: boolean;
  /** Each problem of a node's agent or daemon, "node: what". */
  problems: string[];
}

export async function labStatus(state: LabState): Promise<LabStatus> {
  // The agent client is loaded only for a Tapir lab (the kernel lab needs none of it).
  const agentStatus = state.dataplane === 'tapir' ? (await import('./network/tapir-dataplane.ts')).agentStatus : undefined;
  const stored = usesApi(state) ? await apiObjectsOrProblem(state.apiServer) : loadObjects(state.manifests);
  const podObjects = new Map(stored.objects.filter((o): o is PodObject => o.kind === 'Pod').map((o) => [`${o.metadata.namespace}/${o.metadata.name}`, o]));
  const { services, problems } = labServices(state, stored);
  const ingresses = ingressRows(stored.objects, services, usesApi(state));
  const nodes = await Promise.all(state.nodes.map(async (n) => {
    const daemon = readDaemonStatus(n);
    // The daemon restarts a dead agent: its status knows the current pid.
    const supervised = daemon?.agent ?? null;
    const agentPid = supervised?.pid ?? n.agent?.pid ?? null;
    return {
      name: n.name,
      zone: n.zone,
      netns: n.netns,
      underlayIP: n.underlayIP,
      podCIDR: n.podCIDR,
      gateway: n.gateway,
      ...(n.underlayIP6 === undefined ? {} : { underlayIP6: n.underlayIP6 }),
      ...(n.podCIDRv6 === undefined ? {} : { podCIDRv6: n.podCIDRv6 }),
      ...(n.gateway6 === undefined ? {} : { gateway6: n.gateway6 }),
      agent: n.agent === null ? null : {
        pid: agentPid,
        running: agentPid !== null && isAlive(agentPid),
        answers: agentStatus === undefined ? false : (await agentStatus(n)).answers,
        restarts: supervised?.restarts ?? 0,
        controlSocket: n.agent.controlSocket,
        log: n.agent.log,
      },
      daemon: daemonStatus(n, daemon),
    };
  }));
  // What is wrong now, for people and scripts: `phase` only says the lab was built.
  const health: string[] = [];
  for (const n of nodes) {
    // A running daemon reports its agent's trouble itself (with the next restart time).
    if (n.agent !== null && !n.agent.answers && !n.daemon.running) health.push(`${n.name}: agent ${n.agent.running ? `pid ${n.agent.pid} does not answer` : 'is not running'}${n.agent.restarts > 0 ? ` (${n.agent.restarts} restarts)` : ''}`);
    if (!n.daemon.running) health.push(`${n.name}: node daemon is not running (log ${n.daemon.log})`);
    for (const p of n.daemon.problems) health.push(`${n.name}: ${p}`);
  }
  const dns = state.upstreamDns;
  if (dns !== undefined && (dns.pid === null || !isAlive(dns.pid))) health.push(`upstream DNS: nsd is not running (log ${dns.log})`);
  return {
    name: state.name,
    dataplane: state.dataplane,
    proxyMode: state.proxyMode,
    phase: state.phase,
    ipFamily: state.ipFamily ?? 'ipv4',
    manifests: state.manifests,
    createdAt: state.createdAt,
    source: state.source,
    stateDir: state.stateDir,
    addressing: state.addressing,
    underlay: { netns: state.underlay.netns, bridge: state.underlay.bridge, cidr: state.addressing.underlayCIDR },
    nodes,
    pods: state.pods.map((p) => ({
      name: p.name,
      namespace: p.namespace,
      node: p.node,
      netns: p.netns,
      ip: p.ip,
      mac: p.mac,
      labels: p.labels,
      ips: podIPs(podObjects.get(`${p.namespace}/${p.name}`), p),
      ports: p.ports,
      workload: p.workload.type,
      pid: p.workloadPid,
      running: p.workloadPid !== null && isAlive(p.workloadPid),
      ready: podObjects.get(`${p.namespace}/${p.name}`)?.status.ready ?? false,
      terminating: (podObjects.get(`${p.namespace}/${p.name}`)?.metadata.deletionTimestamp ?? '') !== '',
      log: p.log,
      dnsPolicy: p.dns?.policy ?? 'ClusterFirst',
      resolvConf: p.dns?.resolvConf ?? [],
      dnsWarnings: p.dns?.warnings ?? [],
      env: podProcessEnv(p),
    })),
    upstreamDns: state.upstreamDns === undefined ? null : {
      address: state.upstreamDns.address,
      pid: state.upstreamDns.pid,
      running: state.upstreamDns.pid !== null && isAlive(state.upstreamDns.pid),
      log: state.upstreamDns.log,
    },
    client: state.client === null ? null : { name: state.client.name, netns: state.client.netns, ip: state.client.ip, ...(state.client.ip6 === undefined ? {} : { ip6: state.client.ip6 }) },
    services,
    ingresses,
    manifestProblems: problems,
    healthy: health.length === 0,
    problems: health,
  };
}

/** The Pod object's podIPs when it has them, else the address the lab gave the pod. */
function podIPs(pod: PodObject | undefined, state: PodState): string[] {
  if (pod !== undefined && pod.status.podIPs.length > 0) return [...pod.status.podIPs];
  return [state.ip, state.ip6].filter((ip): ip is string => ip != null);
}

function ingressRows(objects: readonly { kind: string }[], services: readonly ServiceDescription[], api: boolean): LabStatus['ingresses'] {
  const classes = objects.filter((o): o is IngressClassObject => o.kind === 'IngressClass');
  const controller = services.find((s) => s.namespace === INGRESS_NAMESPACE && s.name === INGRESS_SERVICE);
  return objects.filter((o): o is IngressObject => o.kind === 'Ingress').map((ing) => {
    const served = classifyIngress(ing, classes, DEFAULT_CLASS_NAME).ours;
    return {
      name: ing.metadata.name,
      namespace: ing.metadata.namespace,
      className: ing.spec.ingressClassName,
      hosts: ing.spec.rules.map((r) => r.host || '*'),
      addresses: api ? ing.status.loadBalancerIPs : served ? controller?.loadBalancerIPs ?? [] : [],
      served,
    };
  });
}

function daemonStatus(node: LabState['nodes'][number], status: DaemonStatus | undefined): LabStatus['nodes'][number]['daemon'] {
  return {
    pid: node.daemon.pid,
    running: node.daemon.pid !== null && isAlive(node.daemon.pid),
    revision: status?.revision ?? null,
    announced: status?.announced ?? [],
    problems: status?.problems ?? [],
    log: node.daemon.log,
  };
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

export function formatStatus(status: LabStatus): string {
  const a = status.addressing;
  const lines = [
    `lab ${status.name}: dataplane ${status.dataplane}, proxy ${status.proxyMode}, ${status.phase}${status.healthy ? '' : ' but DEGRADED'}; underlay ${a.underlayCIDR} (MTU ${a.mtu}), cluster ${status.ipFamily === 'ipv6' ? a.clusterCIDRv6 : a.clusterCIDR}, services ${status.ipFamily === 'ipv6' ? a.serviceCIDRv6 : a.serviceCIDR}${status.ipFamily === 'ipv6' ? ' (IPv6-only)' : ''}, VNI ${a.vni}, pod MTU ${a.podMTU}`,
    '',
    table(['NODE', 'ZONE', 'UNDERLAY IP', 'POD CIDR', 'GATEWAY', ...(status.dataplane === 'tapir' ? ['AGENT'] : []), 'ANNOUNCES', 'NETNS'],
      status.nodes.map((n) => [n.name, n.zone, n.underlayIP, n.podCIDR, n.gateway,
        ...(n.agent === null ? [] : [`${n.agent.answers ? `pid ${n.agent.pid}` : n.agent.running ? 'not answering' : 'stopped'}${n.agent.restarts > 0 ? ` (${n.agent.restarts} restarts)` : ''}`]),
        n.daemon.announced.join(',') || '-', n.netns])),
    '',
    table(['POD', 'NODE', 'IP', 'READY', 'WORKLOAD', 'LABELS', 'NETNS'],
      status.pods.map((p) => [`${p.namespace}/${p.name}`, p.node, p.ip ?? p.ips[0] ?? '-', p.terminating ? 'terminating' : p.ready ? 'yes' : 'no', `${p.workload}${p.pid === null ? '' : p.running ? '' : ' (exited)'}`,
        Object.entries(p.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-', p.netns])),
  ];
  if (status.services.length > 0) lines.push('', ...formatServices(status.services));
  if (status.ingresses.length > 0) {
    lines.push('', table(['INGRESS', 'CLASS', 'HOSTS', 'ADDRESS'], status.ingresses.map((i) => [`${i.namespace}/${i.name}`, i.className || '-', i.hosts.join(',') || '*', i.addresses.join(',') || (i.served ? 'pending' : '- (not class tapir)')])));
  }
  for (const problem of status.manifestProblems) lines.push(`manifest problem: ${problem}`);
  for (const problem of status.problems) lines.push(`problem: ${problem}`);
  for (const p of status.pods) for (const warning of p.dnsWarnings) lines.push(`warning: pod ${p.namespace}/${p.name}: DNSConfigForming: ${warning}`);
  if (status.upstreamDns !== null) lines.push(`upstream DNS: nsd ${status.upstreamDns.running ? `pid ${status.upstreamDns.pid}` : 'NOT RUNNING'} on ${status.upstreamDns.address}:53 (zone example.test)`);
  if (status.client !== null) lines.push('', table(['CLIENT', 'UNDERLAY IP', 'NETNS'], [[status.client.name, status.client.ip, status.client.netns]]));
  return lines.join('\n');
}

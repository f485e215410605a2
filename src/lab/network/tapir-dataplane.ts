// The Tapir dataplane in the lab: one `tapir agent` per node namespace, then every pod
// attached through tapir-cni exactly as a container runtime does it (CNI spec 1.1.0:
// CNI_* environment, the plugin's network config on stdin, the result on stdout).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { labClusterDns } from '../cluster/pod-start.ts';
import { dirname, join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { agentPorts, agentStatusAt } from './agent-control.ts';
import { agentCommand, clusterAgentCommand, clusterAgentEnv, TAPIR_BIN, TAPIR_CNI_BIN, TAPIR_CNI_CONFLIST } from './executables.ts';
import { UNDERLAY_IFNAME, POD_IFNAME } from './names.ts';
import { clusterNodes } from '../plan.ts';
import { isAlive, logTail, spawnDetached } from './processes.ts';
import { tryRunIn } from '../../device/ip-command.ts';
import { interruptibleSleep } from './shell.ts';
import { hasIpv6, isIpv6Only, isIpv6Underlay, usesApi, type LabState, type NodeState, type PodState } from '../state.ts';
import { LabError } from '../validate.ts';

/** The runtime's CNI_PATH: our plugin first, then the usual homes of host-local & co. */
const CNI_PATH = [dirname(TAPIR_CNI_BIN), '/opt/cni/bin', '/usr/lib/cni'].join(':');
const AGENT_READY_TIMEOUT_MS = 20_000;
const CNI_TIMEOUT_MS = 20_000;

export function agentConfig(state: LabState, node: NodeState): Record<string, unknown> {
  const agent = node.agent!;
  return {
    nodeName: node.name,
    underlay: {
      interface: UNDERLAY_IFNAME, address: node.underlayIP, ...(node.underlayIP6 === undefined ? {} : { addressV6: node.underlayIP6 }),
      ...(isIpv6Underlay(state) ? { family: 'ipv6' } : {}),
    },
    podCIDR: node.podCIDR,
    clusterCIDR: state.addressing.clusterCIDR,
    serviceCIDR: state.addressing.serviceCIDR,
    ...(node.podCIDRv6 === undefined ? {} : { podCIDRv6: node.podCIDRv6, clusterCIDRv6: state.addressing.clusterCIDRv6, serviceCIDRv6: state.addressing.serviceCIDRv6 }),
    vni: state.addressing.vni,
    mtu: state.addressing.podMTU,
    stateDir: agent.dir,
    controlSocket: agent.controlSocket,
    hostTun: 'tapir0',
    nodes: clusterNodes(state),
    // Services: the lab's manifest directory (Kubernetes objects, one per file), this
    // node's zone (topology-aware routing) and where node ports are served (127.0.0.1
    // too: localhost node ports, as kube-proxy's iptables mode by default).
    manifests: state.manifests,
    zone: node.zone,
    nodePortAddresses: [node.underlayIP, '127.0.0.1'],
    // The cluster DNS server on the lab's cluster DNS address, from kubeadm's Corefile:
    // `forward . /etc/resolv.conf` reaches the lab's upstream through the node's resolv.conf.
    dns: { clusterDNS: [labClusterDns(state)] },
    ...state.agent,
  };
}

/**
 * Cluster mode: the agent's file as the DaemonSet's ConfigMap carries it (a
 * KubeProxyConfiguration and a TapirAgentConfiguration, deploy/kubernetes/configmap.yaml),
 * with no per-node field: the node's name comes from NODE_NAME, its underlay address,
 * interface, pod CIDR and zone from its Node object, every other node's route from the
 * Nodes. Only the paths differ between nodes, because the lab's nodes share one file
 * system where a cluster's each have their own /run/tapir.
 */
export function clusterAgentConfig(state: LabState, node: NodeState): string {
  const agent = node.agent!;
  const kubeProxy = {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    bindAddress: '0.0.0.0',
    healthzBindAddress: '0.0.0.0:10256',
    metricsBindAddress: '127.0.0.1:10249',
    clusterCIDR: state.addressing.clusterCIDR,
    detectLocalMode: 'ClusterCIDR',
    // The node's address and, as iptables mode's localhostNodePorts, 127.0.0.1.
    nodePortAddresses: ['primary', 'localhost'],
    // Short enough that a lab sees healthz turn 503 (after 2 x syncPeriod with a change
    // waiting, or the API server silent) within a test; kube-proxy's default is 30 s.
    iptables: { minSyncPeriod: '100ms', syncPeriod: '5s' },
  };
  const tapir = {
    apiVersion: 'tapir.dev/v1alpha1',
    kind: 'TapirAgentConfiguration',
    serviceCIDR: state.addressing.serviceCIDR,
    // VXLAN over IPv6: each node's end is its Node's IPv6 InternalIP.
    ...(isIpv6Underlay(state) ? { underlay: { family: 'ipv6' } } : {}),
    // Dual-stack and IPv6-only: the cluster's IPv6 range (the node's own /64 comes from its Node's spec.podCIDRs).
    ...(hasIpv6(state) ? { clusterCIDRv6: state.addressing.clusterCIDRv6, serviceCIDRv6: state.addressing.serviceCIDRv6 } : {}),
    vni: state.addressing.vni,
    mtu: state.addressing.podMTU,
    hostTun: 'tapir0',
    stateDir: agent.dir,
    controlSocket: agent.controlSocket,
    dns: { clusterDNS: [labClusterDns(state)] },
    ...state.agent,
  };
  return `# written by tapir lab up (lab ${state.name}): the DaemonSet ConfigMap's config.yaml\n${toYaml(kubeProxy)}---\n${toYaml(tapir)}`;
}

/**
 * The tapir-cni plugin's network config as the runtime passes it (from the conflist).
 * Dual-stack nodes: host-local style `ranges`, one range set per family; IPv6-only
 * labs (`ipv6Only`): the IPv6 range set alone, so pods get no IPv4 address.
 */
export function cniNetworkConfig(node: NodeState, ipv6Only = false): Record<string, unknown> {
  const dataDir = join(node.agent!.dir, 'ipam');
  const range6 = [{ subnet: node.podCIDRv6, gateway: node.gateway6 }];
  const ipam = node.podCIDRv6 === undefined
    ? { type: 'tapir-ipam', subnet: node.podCIDR, gateway: node.gateway, dataDir }
    : { type: 'tapir-ipam', ranges: ipv6Only ? [range6] : [[{ subnet: node.podCIDR, gateway: node.gateway }], range6], dataDir };
  return { cniVersion: '1.1.0', name: 'tapir', type: 'tapir-cni', controlSocket: node.agent!.controlSocket, ipam };
}

export async function startAgents(state: LabState, progress: (message: string) => void, save: () => void): Promise<void> {
  progress(`tapir dataplane: starting ${state.nodes.length} agents (${TAPIR_BIN} agent)`);
  for (const node of state.nodes) {
    const agent = node.agent!;
    mkdirSync(agent.dir, { recursive: true });
    writeFileSync(agent.config, usesApi(state) ? clusterAgentConfig(state, node) : `# written by tapir lab up (lab ${state.name})\n${toYaml(agentConfig(state, node))}`);
    // The conflist a node would carry in /etc/cni/net.d, for reading and for running
    // tapir-cni by hand; the lab itself passes the plugin's part on stdin.
    const { cniVersion, name, ...plugin } = cniNetworkConfig(node, isIpv6Only(state));
    writeFileSync(join(agent.dir, '10-tapir.conflist'), `${JSON.stringify({ cniVersion, name, plugins: [plugin] }, null, 2)}\n`);
    if (usesApi(state)) {
      // As the DaemonSet's pod: in-cluster credentials at the service account path (a
      // private mount namespace per agent, executables.ts), its environment from the
      // downward API and the `kubernetes` Service.
      const podRoot = join(agent.dir, 'pod-root');
      agent.pid = spawnDetached(node.netns, clusterAgentCommand(agent.config, podRoot), agent.log, { ...process.env, ...clusterAgentEnv(state, node, podRoot) });
    } else {
      agent.pid = spawnDetached(node.netns, agentCommand(agent.config), agent.log);
    }
  }
  save();
  await Promise.all(state.nodes.map((node) => waitForAgent(node)));
}

async function waitForAgent(node: NodeState): Promise<void> {
  const agent = node.agent!;
  const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
  for (;;) {
    if (!isAlive(agent.pid!)) {
      throw new LabError('AGENT_FAILED', `agent of ${node.name} exited before answering on ${agent.controlSocket} (log ${agent.log}):\n${logTail(agent.log)}`);
    }
    if ((await agentStatusAt(agent.controlSocket, 500)) !== null) return;
    if (Date.now() > deadline) {
      throw new LabError('AGENT_TIMEOUT', `agent of ${node.name} did not answer status on ${agent.controlSocket} within ${AGENT_READY_TIMEOUT_MS} ms (log ${agent.log}):\n${logTail(agent.log)}`);
    }
    await interruptibleSleep(100);
  }
}

/** CNI ADD for every pod: pods of one node one after another, nodes in parallel. */
export async function addPods(state: LabState, progress: (message: string) => void, save: () => void): Promise<void> {
  progress(`tapir dataplane: CNI ADD for ${state.pods.length} pods`);
  await Promise.all(state.nodes.map(async (node) => {
    for (const pod of state.pods.filter((p) => p.node === node.name)) {
      const result = await cni('ADD', node, pod, isIpv6Only(state));
      applyResult(pod, result, isIpv6Only(state));
      pod.cniAdded = true;
      save();
    }
    // The TAP's name before it moved into the pod (the CNI result names only eth0).
    for (const port of await agentPorts(node.agent!.controlSocket)) {
      const pod = state.pods.find((p) => p.containerId === port.containerId && p.node === node.name);
      if (pod !== undefined) pod.hostDevice = port.hostName;
    }
  }));
  save();
}

/** CNI ADD of one pod into a running lab (`lab apply`); its namespace exists, lo is up. */
export async function addPod(node: NodeState, pod: PodState, ipv6Only = false): Promise<void> {
  applyResult(pod, await cni('ADD', node, pod, ipv6Only), ipv6Only);
  pod.cniAdded = true;
  for (const port of await agentPorts(node.agent!.controlSocket)) {
    if (port.containerId === pod.containerId) pod.hostDevice = port.hostName;
  }
}

/** CNI DEL of one pod (`lab delete`); a dead agent already let go of its port. */
export async function deletePod(node: NodeState, pod: PodState, ipv6Only = false): Promise<void> {
  if (!pod.cniAdded || node.agent === null || (await agentStatusAt(node.agent.controlSocket)) === null) return;
  await cni('DEL', node, pod, ipv6Only);
  pod.cniAdded = false;
}

/**
 * CNI DEL for every pod whose agent still answers. A dead agent already dropped the
 * pods' TAPs with its file descriptors; its IPAM data goes with the state directory.
 */
export async function deletePods(state: LabState, warn: (message: string) => void): Promise<void> {
  await Promise.all(state.nodes.map(async (node) => {
    if (node.agent === null || (await agentStatusAt(node.agent.controlSocket)) === null) return;
    for (const pod of state.pods.filter((p) => p.node === node.name)) {
      try {
        await cni('DEL', node, pod, isIpv6Only(state));
        pod.cniAdded = false;
      } catch (err) {
        warn(`CNI DEL of ${pod.namespace}/${pod.name}: ${(err as Error).message}`);
      }
    }
  }));
}

async function cni(command: 'ADD' | 'DEL', node: NodeState, pod: PodState, ipv6Only: boolean): Promise<Record<string, unknown>> {
  const env = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: pod.containerId,
    CNI_NETNS: `/var/run/netns/${pod.netns}`,
    CNI_IFNAME: POD_IFNAME,
    CNI_PATH,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${pod.containerId}`,
  };
  // The runtime runs the plugin in the node's own namespace, so do we.
  const config = TAPIR_CNI_CONFLIST === null ? cniNetworkConfig(node, ipv6Only) : conflistPlugin(TAPIR_CNI_CONFLIST);
  const result = await tryRunIn(node.netns, TAPIR_CNI_BIN, [], {
    env, input: JSON.stringify(config), timeoutMs: CNI_TIMEOUT_MS,
  });
  let output: Record<string, unknown> = {};
  try {
    if (result.stdout.trim() !== '') output = JSON.parse(result.stdout) as Record<string, unknown>;
  } catch { /* reported below with the raw text */ }
  if (result.code !== 0) {
    const message = typeof output.msg === 'string' ? `${output.msg}${output.details ? ` (${String(output.details)})` : ''} [CNI code ${String(output.code)}]` : (result.stdout + result.stderr).trim();
    throw new LabError('CNI_FAILED', `tapir-cni ${command} for pod ${pod.namespace}/${pod.name} on ${node.name} failed (exit ${result.code}): ${message}`);
  }
  return output;
}

/**
 * The network config a runtime passes for a conflist of one plugin (CNI spec, "Network
 * configuration lists"): the plugin's object with the list's name and cniVersion.
 * Read at every call, as a runtime re-reads /etc/cni/net.d.
 */
export function conflistPlugin(path: string): Record<string, unknown> {
  let list: { cniVersion?: unknown; name?: unknown; plugins?: unknown };
  try {
    list = JSON.parse(readFileSync(path, 'utf8')) as typeof list;
  } catch (err) {
    throw new LabError('CNI_FAILED', `${path}: ${(err as Error).message}`);
  }
  if (!Array.isArray(list.plugins) || list.plugins.length !== 1 || typeof list.name !== 'string' || typeof list.cniVersion !== 'string') {
    throw new LabError('CNI_FAILED', `${path}: the lab's runtime takes a conflist with name, cniVersion and exactly one plugin`);
  }
  return { cniVersion: list.cniVersion, name: list.name, ...(list.plugins[0] as Record<string, unknown>) };
}

/**
 * Reads the pod's addresses (IPv4, and IPv6 in a dual-stack lab; IPv6 only in an
 * IPv6-only lab, where an IPv4 address in the result is an error), MAC and host device
 * from a CNI 1.1.0 result.
 */
function applyResult(pod: PodState, result: Record<string, unknown>, ipv6Only: boolean): void {
  const interfaces = (Array.isArray(result.interfaces) ? result.interfaces : []) as { name?: string; mac?: string; sandbox?: string }[];
  const ips = (Array.isArray(result.ips) ? result.ips : []) as { address?: string; interface?: number }[];
  const ip = ips.find((i) => typeof i.address === 'string' && !i.address.includes(':'));
  const ip6 = ips.find((i) => typeof i.address === 'string' && i.address.includes(':'));
  const where = `tapir-cni ADD for pod ${pod.namespace}/${pod.name}`;
  if (ipv6Only) {
    if (ip !== undefined) throw new LabError('CNI_FAILED', `${where}: the lab is IPv6-only and the result has an IPv4 address: ${JSON.stringify(result)}`);
  } else {
    if (ip === undefined) throw new LabError('CNI_FAILED', `${where}: result has no IPv4 address: ${JSON.stringify(result)}`);
    pod.ip = ip.address!.split('/')[0]!;
  }
  if (pod.ip6 !== undefined) {
    if (ip6 === undefined) throw new LabError('CNI_FAILED', `${where}: the lab is ${ipv6Only ? 'IPv6-only' : 'dual-stack'} and the result has no IPv6 address: ${JSON.stringify(result)}`);
    pod.ip6 = ip6.address!.split('/')[0]!;
  }
  const primary = ipv6Only ? ip6 : ip;
  const podInterface = primary?.interface === undefined ? interfaces.find((i) => i.sandbox) : interfaces[primary.interface];
  pod.mac = podInterface?.mac ?? null;
}

/** For status: does the agent of `node` answer, and how many ports does it report. */
export async function agentStatus(node: NodeState): Promise<{ answers: boolean; ports?: number }> {
  const status = node.agent === null ? null : await agentStatusAt(node.agent.controlSocket);
  return status === null ? { answers: false } : { answers: true, ports: status.ports };
}

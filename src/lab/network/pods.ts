// Pods added to and removed from a running lab (`lab apply` / `lab delete`), one at a
// time, the way a container runtime does it: a network namespace, its interface (a veth
// on the node's bridge with the kernel dataplane, CNI ADD with tapir), the workload
// started inside; and in reverse: stop the workload, CNI DEL, delete the namespace.
import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { PodObject, ServiceObject } from '../../k8s/objects.ts';
import { podDnsFields, preparePodStart } from '../cluster/pod-start.ts';
import { removeNetnsEtc } from './netns-files.ts';
import { kernelPodLines, podPortLines } from './kernel-dataplane.ts';
import { podNetns, podVeth } from './names.ts';
import { isAlive, pidsInNetns, stopProcesses } from './processes.ts';
import { ipBatch } from './shell.ts';
import { isIpv6Only, type LabState, type NodeState, type PodState } from '../state.ts';
import type { ContainerCommand, ContainerPort, Workload } from '../topology.ts';
import { LabError } from '../validate.ts';
import { startWorkload, waitForWorkloads } from '../workloads.ts';
import { ipv4ToString, ipv6ToString, parseCidr, parseCidr6 } from '../../wire/address.ts';

const WORKLOAD_READY_TIMEOUT_MS = 15_000;
/** Pod CIDR .0 is vxlan0's, .1 the gateway (src/lab/plan.ts). */
const FIRST_POD_HOST = 2;

/** The node for a pod without spec.nodeName: the one with the fewest pods (first on a tie). */
export function scheduleNode(state: LabState, planned: PodState[] = []): NodeState {
  const count = (n: NodeState): number => [...state.pods, ...planned].filter((p) => p.node === n.name).length;
  return state.nodes.reduce((best, n) => (count(n) < count(best) ? n : best));
}

/**
 * What a Pod manifest's containers run: the HTTP echo on every TCP containerPort and the
 * UDP echo on every UDP one, except for containers with a command, which run it instead.
 */
export function podWorkload(object: PodObject): { workload: Workload; ports: ContainerPort[] } {
  const http: number[] = [];
  const udp: number[] = [];
  const commands: ContainerCommand[] = [];
  const ports: ContainerPort[] = [];
  for (const container of object.spec.containers) {
    for (const p of container.ports) ports.push({ name: p.name, port: p.containerPort, protocol: p.protocol });
    if (container.command !== null) {
      commands.push({ name: container.name, argv: [...container.command, ...container.args], env: {}, envSpec: container.env });
      continue;
    }
    for (const p of container.ports) (p.protocol === 'UDP' ? udp : http).push(p.containerPort);
  }
  return { workload: { type: 'containers', http, udp, commands }, ports };
}

/** The runtime record of a new pod on `node`; addresses and device names not used by `others`. */
export function planPod(state: LabState, node: NodeState, object: PodObject, others: PodState[]): PodState {
  const { name, namespace } = object.metadata;
  const key = `${namespace}.${name}`;
  const { workload, ports } = podWorkload(object);
  const onNode = others.filter((p) => p.node === node.name);
  let ip: string | null = null;
  let hostDevice: string | null = null;
  let ip6: string | null = null;
  if (state.dataplane === 'kernel') {
    const cidr = parseCidr(node.podCIDR, true)!;
    const used = new Set(onNode.map((p) => p.ip));
    // An IPv6-only lab's pods have no IPv4 address.
    for (let host = FIRST_POD_HOST; host < cidr.size - 1 && ip === null && !isIpv6Only(state); host++) {
      const candidate = ipv4ToString(cidr.network + host);
      if (!used.has(candidate)) ip = candidate;
    }
    if (ip === null && !isIpv6Only(state)) throw new LabError('POD_CIDR_FULL', `node ${node.name}: pod CIDR ${node.podCIDR} has no free address for pod ${namespace}/${name}`);
    const devices = new Set(onNode.map((p) => p.hostDevice));
    for (let k = 0; hostDevice === null; k++) if (!devices.has(podVeth(k))) hostDevice = podVeth(k);
    if (node.podCIDRv6 !== undefined) ip6 = freeIpv6(node, onNode, `${namespace}/${name}`);
  }
  return {
    name,
    namespace,
    node: node.name,
    netns: podNetns(state.name, namespace, name),
    ip,
    ...(node.podCIDRv6 === undefined ? {} : { ip6 }),
    mac: null,
    labels: { ...object.metadata.labels },
    ports,
    workload,
    hostDevice,
    containerId: createHash('sha256').update(`tapir-lab/${state.name}/${namespace}/${name}`).digest('hex'),
    cniAdded: false,
    workloadPid: null,
    log: join(state.stateDir, 'pods', `${key}.log`),
    readyFile: join(state.stateDir, 'pods', `${key}.ready`),
    ...podDnsFields(object),
    ...(object.spec.hostname === '' ? {} : { hostname: object.spec.hostname }),
    ...(object.spec.subdomain === '' ? {} : { subdomain: object.spec.subdomain }),
  };
}

/**
 * Kernel dataplane, dual-stack: the first address from podCIDRv6 ::2 up that no pod of
 * the node holds (::0 is vxlan0's, ::1 the gateway, as in IPv4). The search is bounded
 * by the pods on the node, so a /64 never runs out in practice; a /120 can.
 */
function freeIpv6(node: NodeState, onNode: PodState[], pod: string): string {
  const cidr = parseCidr6(node.podCIDRv6!, true)!;
  const used = new Set(onNode.map((p) => p.ip6));
  const hosts = Math.min(2 ** (128 - cidr.prefixLength), FIRST_POD_HOST + onNode.length + 1);
  for (let host = FIRST_POD_HOST; host < hosts; host++) {
    const candidate = ipv6ToString(cidr.host(host));
    if (!used.has(candidate)) return candidate;
  }
  throw new LabError('POD_CIDR_FULL', `node ${node.name}: podCIDRv6 ${node.podCIDRv6} has no free address for pod ${pod}`);
}

/**
 * Creates the pod's namespace and interface and starts its workload; undone by
 * removePod. `services`: the cluster's Services as they stand, for the pod's
 * environment (the kubelet's Service variables).
 */
export async function createPod(state: LabState, pod: PodState, services: readonly ServiceObject[]): Promise<void> {
  const node = state.nodes.find((n) => n.name === pod.node)!;
  if (pod.dns?.hostNetwork === true) {
    throw new LabError('HOST_NETWORK', `pod ${pod.namespace}/${pod.name}: hostNetwork pods are not supported by the lab (every lab pod gets its own network namespace)`);
  }
  await ipBatch(null, [`netns add ${pod.netns}`]);
  if (state.dataplane === 'kernel') {
    await ipBatch(node.netns, podPortLines(pod.hostDevice!, pod.netns, state.addressing.podMTU));
    await ipBatch(pod.netns, kernelPodLines(node, pod, state.addressing.podMTU));
  } else {
    await ipBatch(pod.netns, ['link set lo up']);
    const { addPod } = await import('./tapir-dataplane.ts');
    await addPod(node, pod, isIpv6Only(state));
  }
  preparePodStart(state, pod, services);
  startWorkload(pod);
  await waitForWorkloads([pod], WORKLOAD_READY_TIMEOUT_MS);
}

/** Stops everything in the pod's namespace, releases its interface and deletes the namespace. */
export async function removePod(state: LabState, pod: PodState, warn: (message: string) => void): Promise<void> {
  const node = state.nodes.find((n) => n.name === pod.node);
  const pids = [...new Set([...pidsInNetns([pod.netns]), ...(pod.workloadPid !== null && isAlive(pod.workloadPid) ? [pod.workloadPid] : [])])];
  await stopProcesses(pids, 1500);
  pod.workloadPid = null;
  if (node !== undefined && state.dataplane === 'tapir') {
    try {
      const { deletePod } = await import('./tapir-dataplane.ts');
      await deletePod(node, pod, isIpv6Only(state));
    } catch (err) {
      warn(`CNI DEL of ${pod.namespace}/${pod.name}: ${(err as Error).message}`);
    }
  }
  if (node !== undefined && state.dataplane === 'kernel' && pod.hostDevice !== null) {
    // Deleting the namespace takes the veth pair with it; this only covers a lost namespace.
    await ipBatch(node.netns, [`link del ${pod.hostDevice}`], true);
  }
  if (existsSync(`/run/netns/${pod.netns}`)) await ipBatch(null, [`netns delete ${pod.netns}`]);
  removeNetnsEtc(pod.netns);
  rmSync(pod.readyFile, { force: true });
}

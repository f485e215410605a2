// The lab side of the node daemons (src/lab/node/node-daemon.ts): their configuration,
// starting them detached inside the node namespaces, and waiting until every one has
// acted on the manifests up to a given revision (so `lab up` and `lab apply` return
// with pod readiness, proxy rules and load-balancer addresses in place).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UNDERLAY_IFNAME } from '../network/names.ts';
import { isAlive, logTail, spawnDetached } from '../network/processes.ts';
import { interruptibleSleep } from '../network/shell.ts';
import { usesApi, type LabState, type NodeState } from '../state.ts';
import type { ProxyMode } from '../topology.ts';
import { LabError } from '../validate.ts';
import { agentCommand, clusterAgentCommand, clusterAgentEnv } from '../network/executables.ts';
import type { AgentHealth, SupervisedAgent } from './agent-supervisor.ts';

const DAEMON_MAIN = fileURLToPath(new URL('./node-daemon.ts', import.meta.url));

export interface DaemonConfig {
  lab: string;
  node: string;
  stateDir: string;
  manifests: string;
  proxyMode: ProxyMode;
  clusterCIDR: string;
  serviceCIDR: string;
  underlayCIDR: string;
  underlayIP: string;
  /** Dual-stack labs: the IPv6 cluster and service CIDRs and the node's IPv6 underlay address (the kernel proxy modes' IPv6 proxier). */
  clusterCIDRv6?: string;
  serviceCIDRv6?: string;
  underlayIP6?: string;
  underlayInterface: string;
  /** Node names in topology order (the load balancer's election order). */
  nodes: string[];
  clientNetns: string | null;
  status: string;
  /** Every node's daemon status file (this one's included): the election reads their health. */
  peers: { node: string; status: string }[];
  /** Tapir data plane: the node agent this daemon keeps running, as the kubelet would. */
  agent: SupervisedAgent | null;
  /**
   * Cluster mode: the lab API server (from inside the lab) with the admin kubeconfig:
   * the daemon reads Services, EndpointSlices, Nodes and this node's Pods from it and
   * writes the Pods' Ready conditions back, as the kubelet does. null: the manifests.
   */
  api: { server: string; caFile: string; kubeconfig: string } | null;
  /** The load balancer's address pool (cluster mode: the first node's daemon assigns from it). */
  loadBalancerPool: string;
  /** Dual-stack labs: the IPv6 pool and underlay. */
  loadBalancerPoolV6?: string;
  underlayCIDRv6?: string;
}

/** What a daemon writes after each pass (its status file). */
export interface DaemonStatus {
  pid: number;
  /** The manifest revision this pass read everything up to. */
  revision: number;
  updatedAt: string;
  /** Addresses this node announces for LoadBalancer Services and external IPs. */
  announced: string[];
  /** Kernel proxy modes: the rules installed. */
  proxy: { mode: string; generation: number; syncs: number; ruleLines: number } | null;
  /** Kernel proxy modes in a dual-stack lab: the IPv6 rules installed (ip6tables, `table ip6`). */
  proxy6?: { mode: string; generation: number; syncs: number; ruleLines: number } | null;
  healthCheckNodePorts: number[];
  /** Pods of this node and the prober's verdict. */
  pods: Record<string, boolean>;
  /** Problems of the last pass (empty when fine). */
  problems: string[];
  /** Tapir data plane: the agent as the daemon supervises it. */
  agent: AgentHealth | null;
}

export function daemonConfig(state: LabState, node: NodeState): DaemonConfig {
  return {
    lab: state.name,
    node: node.name,
    stateDir: state.stateDir,
    manifests: state.manifests,
    proxyMode: state.proxyMode,
    clusterCIDR: state.addressing.clusterCIDR,
    serviceCIDR: state.addressing.serviceCIDR,
    underlayCIDR: state.addressing.underlayCIDR,
    underlayIP: node.underlayIP,
    ...(node.underlayIP6 === undefined || state.addressing.clusterCIDRv6 === undefined || state.addressing.serviceCIDRv6 === undefined ? {} : {
      clusterCIDRv6: state.addressing.clusterCIDRv6, serviceCIDRv6: state.addressing.serviceCIDRv6, underlayIP6: node.underlayIP6,
    }),
    underlayInterface: UNDERLAY_IFNAME,
    nodes: state.nodes.map((n) => n.name),
    clientNetns: state.client?.netns ?? null,
    status: node.daemon.status,
    peers: state.nodes.map((n) => ({ node: n.name, status: n.daemon.status })),
    agent: node.agent === null ? null : supervisedAgent(state, node),
    api: usesApi(state) ? { server: state.apiServer.labServer, caFile: state.apiServer.caFile, kubeconfig: state.apiServer.labKubeconfig } : null,
    loadBalancerPool: state.addressing.loadBalancerPool,
    ...(state.addressing.loadBalancerPoolV6 === undefined || state.addressing.underlayCIDRv6 === undefined ? {} : {
      loadBalancerPoolV6: state.addressing.loadBalancerPoolV6, underlayCIDRv6: state.addressing.underlayCIDRv6,
    }),
  };
}

/**
 * The agent as `lab up` started it: the same command, environment and mounts. The
 * daemon runs in the host's mount namespace, so the command goes through `ip netns
 * exec` as `lab up`'s did: that gives the agent the node's /etc/netns files (its
 * resolv.conf, which names the lab's upstream DNS) and a /sys of its namespace.
 */
function supervisedAgent(state: LabState, node: NodeState): SupervisedAgent {
  const agent = node.agent!;
  const inNode = (argv: string[]): string[] => ['ip', 'netns', 'exec', node.netns, ...argv];
  if (!usesApi(state)) return { argv: inNode(agentCommand(agent.config)), log: agent.log, controlSocket: agent.controlSocket, pid: agent.pid };
  const podRoot = join(agent.dir, 'pod-root');
  return { argv: inNode(clusterAgentCommand(agent.config, podRoot)), env: clusterAgentEnv(state, node, podRoot), log: agent.log, controlSocket: agent.controlSocket, pid: agent.pid };
}

export function startDaemons(state: LabState): void {
  for (const node of state.nodes) {
    mkdirSync(dirname(node.daemon.config), { recursive: true });
    writeFileSync(node.daemon.config, `${JSON.stringify(daemonConfig(state, node), null, 2)}\n`);
    // In the node's network namespace but the host's mount namespace (not `ip netns
    // exec`'s own): the pod namespaces its kubelet adds must be the host's and the agents'.
    node.daemon.pid = spawnDetached(node.netns, [process.execPath, DAEMON_MAIN, '--config', node.daemon.config], node.daemon.log, process.env, 'host');
  }
}

export function readDaemonStatus(node: NodeState): DaemonStatus | undefined {
  return readStatusFile(node.daemon.status);
}

/** A daemon's status file; undefined until it has written one. */
export function readStatusFile(path: string): DaemonStatus | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as DaemonStatus;
  } catch {
    return undefined;
  }
}

/**
 * Waits until every node daemon reports `revision` or later and, when `pods` is given,
 * those pods ("ns/name") Ready. Throws naming the laggards (with their logs) on timeout,
 * except that with `onPodsNotReady` pods still not ready only get reported there.
 */
export async function waitForDaemons(state: LabState, revision: number, timeoutMs: number, pods: string[] = [], onPodsNotReady?: (pods: string[]) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lagging: string[] = [];
    const waiting = new Set(pods);
    for (const node of state.nodes) {
      if (node.daemon.pid === null || !isAlive(node.daemon.pid)) {
        throw new LabError('DAEMON_FAILED', `node daemon of ${node.name} is not running (log ${node.daemon.log}):\n${logTail(node.daemon.log)}`);
      }
      const status = readDaemonStatus(node);
      if (status === undefined || status.revision < revision) lagging.push(`${node.name} (at revision ${status?.revision ?? 'none'}, want ${revision})`);
      for (const [pod, ready] of Object.entries(status?.pods ?? {})) if (ready) waiting.delete(pod);
    }
    if (lagging.length === 0 && waiting.size === 0) return;
    if (Date.now() > deadline && lagging.length === 0 && onPodsNotReady !== undefined) {
      onPodsNotReady([...waiting]);
      return;
    }
    if (Date.now() > deadline) {
      const parts = [...(lagging.length > 0 ? [`node daemons behind: ${lagging.join(', ')}`] : []), ...(waiting.size > 0 ? [`pods not ready: ${[...waiting].join(', ')}`] : [])];
      const problems = state.nodes.flatMap((n) => (readDaemonStatus(n)?.problems ?? []).map((p) => `${n.name}: ${p}`));
      throw new LabError('NOT_READY', `not ready after ${timeoutMs} ms: ${parts.join('; ')}${problems.length > 0 ? `\n  ${problems.join('\n  ')}` : ''}`);
    }
    await interruptibleSleep(50);
  }
}

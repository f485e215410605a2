// `lab up` and `lab down`: build the whole lab from its plan, recording each step in
// state.json; remove everything the lab made, from state.json and, after a crash, from
// the namespace names alone.
import { existsSync, mkdirSync, readFileSync, rmSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildKernelDataplane } from './network/kernel-dataplane.ts';
import { existingLabNetns } from './network/names.ts';
import { planLab } from './plan.ts';
import { checkTraffic } from './network/traffic-check.ts';
import { isAlive, pidsInNetns, stopProcesses } from './network/processes.ts';
import { interruption, ipBatch } from './network/shell.ts';
import { claimStateDir, loadState, saveState, stateDirOf, isDualStack, isIpv6Only, usesApi, type LabState, type ObjectStore } from './state.ts';
import { DUAL_STACK_DEMO } from './cluster/dual-stack-demo.ts';
import type { ManifestSource } from './cluster/topology-manifests.ts';
import { apiApplyLocked, createTopologyPods } from './cluster/api-apply.ts';
import { defaultTopology, loadTopologyFile, type Dataplane, type IpFamily, type ProxyMode, type UnderlayFamily } from './topology.ts';
import { parseManifest } from '../k8s/manifest.ts';
import { applyLocked } from './cluster/apply.ts';
import { invalid } from './cluster/apply-plan.ts';
import { readDaemonStatus, startDaemons, waitForDaemons } from './node/daemons.ts';
import { labClusterDns } from './cluster/pod-start.ts';
import { startKernelDns } from './network/kernel-dns.ts';
import { kubeDnsObjects, labNamespaces, namespaceObject, nodeObject, podStatus, topologyPodObject } from './cluster/lab-objects.ts';
import { bumpRevision, ensureManifestDir, writeObject } from './cluster/manifests.ts';
import { allNetns, buildUnderlay, createNamespaces, preparePodNamespaces } from './network/underlay.ts';
import { isDns1123Label } from '../k8s/fields.ts';
import { LabError } from './validate.ts';
import { ipv6OnlyServices } from './cluster/ipv6-only.ts';
import { apiServerAddress, startLabControlPlane } from './apiserver/lab-control-plane.ts';
import { listApiObjects } from './cluster/api-apply.ts';
import { loadObjects } from './cluster/manifests.ts';
import { labNetnsEtcDirs, removeLabNetnsEtc, writeNetnsResolvConf } from './network/netns-files.ts';
import { planUpstreamDns, siteResolvConf, startUpstreamDns, stopUpstreamDns } from './network/upstream-dns.ts';
import type { ServiceObject } from '../k8s/objects.ts';
import { DEMO_HOST, INGRESS_NAMESPACE, INGRESS_SERVICE, ingressManifests, waitForControllers } from './cluster/ingress.ts';
import { checkAlive, startWorkloads, waitForWorkloads } from './workloads.ts';

export const DEFAULT_LAB_NAME = 'tapir';
const WORKLOAD_READY_TIMEOUT_MS = 15_000;
const TRAFFIC_TIMEOUT_MS = { kernel: 10_000, tapir: 30_000 } as const;
/** Until every pod is Ready and every node daemon acted on the manifests. */
const SERVICES_READY_TIMEOUT_MS = 20_000;
const MANIFEST_HEADER = '# written by tapir lab (the lab\'s API server); change it with tapir lab apply/delete\n';

export interface UpOptions {
  topologyPath: string | undefined;
  name: string | undefined;
  dataplane: Dataplane | undefined;
  proxyMode: ProxyMode | undefined;
  /** ipv4, dual or ipv6 (overrides the topology's ipFamily). */
  ipFamily?: IpFamily | undefined;
  /** The family VXLAN rides (default ipv4; ipv6 needs ipFamily dual). */
  underlay?: UnderlayFamily | undefined;
  /** Where the lab keeps its objects (default kubernetes: the lab API server, agents in cluster mode). */
  source?: ObjectStore | undefined;
  /** Also the Ingress controller (src/lab/cluster/ingress.ts). */
  ingress?: boolean | undefined;
  /** Leave a lab that failed to come up in place, for inspection. */
  keepOnFailure: boolean;
  progress(message: string): void;
}

export function checkLabName(name: string): void {
  if (!isDns1123Label(name) || name.length > 24) {
    throw new LabError('BAD_NAME', `lab name "${name}" must be a DNS-1123 label (lowercase letters, digits, "-") of at most 24 characters`);
  }
}

/** Whether the topology's Services include the default topology's demo `web` Service (the demo extras build on it). */
function hasDemoWeb(services: ManifestSource | null): boolean {
  return services !== null && parseManifest(services.text, services.file).objects.some((o) => o.kind === 'Service' && o.metadata.namespace === 'default' && o.metadata.name === 'web');
}

export async function labUp(options: UpOptions): Promise<LabState> {
  const started = Date.now();
  const topology = options.topologyPath === undefined ? defaultTopology() : loadTopologyFile(options.topologyPath);
  const name = options.name ?? topology.name ?? DEFAULT_LAB_NAME;
  checkLabName(name);
  const state = planLab(topology, name, options.dataplane ?? topology.dataplane ?? 'tapir', options.proxyMode, options.ipFamily, options.underlay);
  state.objectStore = options.source ?? 'kubernetes';
  if (isIpv6Only(state) && state.objectStore === 'manifests') {
    // The clusterless agents allocate cluster IPs from their IPv4 service CIDR first; only the API server's allocator is IPv6-primary.
    throw new LabError('TOPOLOGY_INVALID', '--ip-family ipv6 needs --source kubernetes (the lab API server allocates the IPv6 cluster IPs); manifest-mode labs are ipv4 or dual');
  }
  // An IPv6-only lab: the topology's own IPv4 cluster and external IPs become their IPv6 counterparts (cluster/ipv6-only.ts).
  if (isIpv6Only(state) && topology.services !== null) topology.services = ipv6OnlyServices(topology.services, state);
  if (topology.services !== null) {
    // Checked before anything is built; the lab-specific checks come with the apply.
    const parsed = parseManifest(topology.services.text, topology.services.file);
    if (parsed.problems.length > 0) throw invalid(topology.services.file, parsed.problems);
  }
  if (!claimStateDir(name)) {
    throw new LabError('EXISTS', `lab "${name}" already exists (${stateDirOf(name)}); remove it with: tapir lab down --name ${name}`);
  }
  const leftovers = existingLabNetns(name);
  if (leftovers.length > 0) {
    rmdirSync(stateDirOf(name));
    throw new LabError('EXISTS', `namespaces of an earlier lab "${name}" remain (${leftovers.join(', ')}); remove them with: tapir lab down --name ${name}`);
  }
  const progress = (message: string): void => options.progress(`lab ${name}: ${message}`);
  const save = (): void => {
    saveState(state);
    // Between steps is where an interruption takes effect (the steps themselves are short).
    interruption.signal.throwIfAborted();
  };
  const interrupt = (signal: NodeJS.Signals): void => {
    progress(`${signal}: stopping (again to abandon the lab as it is)`);
    interruption.abort(new LabError('INTERRUPTED', `interrupted by ${signal}`));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  mkdirSync(join(state.stateDir, 'pods'), { recursive: true });
  saveState(state);
  try {
    const netnsCount = allNetns(state).length;
    progress(`${netnsCount} namespaces, underlay ${state.addressing.underlayCIDR} on ${state.underlay.netns}/${state.underlay.bridge}`);
    await createNamespaces(state);
    await buildUnderlay(state);
    // The site's resolver, before anything on a node reads its resolv.conf (the agents do at start).
    planUpstreamDns(state, apiServerAddress(state));
    save();
    await startUpstreamDns(state);
    // Every host of the site uses it: the nodes (their kubelet's --resolv-conf), the client, the underlay.
    for (const netns of [...state.nodes.map((n) => n.netns), ...(state.client === null ? [] : [state.client.netns]), state.underlay.netns]) {
      writeNetnsResolvConf(netns, siteResolvConf(state));
    }
    progress(`upstream DNS: nsd on ${state.upstreamDns!.address}:53 (zone example.test) in ${state.underlay.netns}; the nodes' and the client's resolv.conf name it`);
    save();
    // The manifest directory exists (with Nodes and Namespaces) before any agent starts.
    ensureManifestDir(state.stateDir);
    for (const node of state.nodes) writeObject(state.manifests, nodeObject(node), MANIFEST_HEADER);
    for (const namespace of labNamespaces(state)) writeObject(state.manifests, namespaceObject(namespace), MANIFEST_HEADER);
    // The DNS addon's Service holds the cluster DNS address before any other Service can be given it.
    const dnsAddon = kubeDnsObjects(state, labClusterDns(state));
    for (const obj of dnsAddon) writeObject(state.manifests, obj, MANIFEST_HEADER);
    save();
    state.apiServer = await startLabControlPlane(state, [...state.nodes.map(nodeObject), ...labNamespaces(state).map(namespaceObject), ...dnsAddon]);
    progress(`API server ${state.apiServer.labServer} in ${state.underlay.netns}, ${state.apiServer.hostServer} on the host (tapir lab kubeconfig --name ${name})`);
    save();
    if (state.dataplane === 'kernel') {
      await buildKernelDataplane(state, progress);
      await startKernelDns(state, progress);
    } else {
      // Loaded only here: the kernel dataplane must work whatever state the agent code is in.
      const { addPods, startAgents } = await import('./network/tapir-dataplane.ts');
      await preparePodNamespaces(state);
      await startAgents(state, progress, save);
      await addPods(state, progress, save);
    }
    save();
    progress(`starting ${state.pods.length} workloads`);
    // The Service variables name what exists at the pods' start (in cluster mode the `kubernetes` Service).
    const stored = usesApi(state) ? await listApiObjects(state.apiServer) : loadObjects(state.manifests);
    startWorkloads(state, stored.objects.filter((o): o is ServiceObject => o.kind === 'Service'));
    save();
    await waitForWorkloads(state.pods, WORKLOAD_READY_TIMEOUT_MS);
    if (usesApi(state)) {
      await createTopologyPods(state);
    } else {
      for (const pod of state.pods) {
        const node = state.nodes.find((n) => n.name === pod.node)!;
        writeObject(state.manifests, { ...topologyPodObject(pod), status: podStatus(pod, false, node.underlayIP) }, MANIFEST_HEADER);
      }
    }
    bumpRevision(state.stateDir);
    progress(`starting node daemons (readiness, load balancer${state.proxyMode === 'tapir' ? '' : `, ${state.proxyMode} rules`})`);
    startDaemons(state);
    save();
    if (topology.services !== null) {
      progress(`applying ${topology.services.file}`);
      const result = usesApi(state) ? await apiApplyLocked(state, topology.services, progress) : await applyLocked(state, topology.services, progress);
      for (const line of [...result.lines, ...result.warnings]) progress(line);
      save();
      if (isDualStack(state) && hasDemoWeb(topology.services)) {
        progress(`applying the ${DUAL_STACK_DEMO.file}`);
        const dual = usesApi(state) ? await apiApplyLocked(state, DUAL_STACK_DEMO, progress) : await applyLocked(state, DUAL_STACK_DEMO, progress);
        for (const line of [...dual.lines, ...dual.warnings]) progress(line);
        save();
      }
    }
    if (options.ingress === true) {
      // After the topology's Services, so that their load-balancer addresses stay what they are without it.
      const demo = hasDemoWeb(topology.services);
      const source = ingressManifests(state, demo);
      progress(`Ingress controller: ${state.nodes.length} pods in ${INGRESS_NAMESPACE}, Service ${INGRESS_NAMESPACE}/${INGRESS_SERVICE}${demo ? `, Ingress default/web (${DEMO_HOST})` : ''}`);
      const result = usesApi(state) ? await apiApplyLocked(state, source, progress) : await applyLocked(state, source, progress);
      for (const line of result.warnings) progress(line);
      save();
      const pending = await waitForControllers(state, SERVICES_READY_TIMEOUT_MS);
      if (pending.length > 0) progress(`warning: Ingress controller pods not ready after ${SERVICES_READY_TIMEOUT_MS / 1000} s: ${pending.join(', ')} (their logs: ${state.stateDir}/pods/)`);
    }
    // A pod that never turns ready (a command that does not listen on its declared port)
    // is the topology's business: reported, not fatal, as in a cluster.
    await waitForDaemons(state, bumpRevision(state.stateDir), SERVICES_READY_TIMEOUT_MS, state.pods.map((p) => `${p.namespace}/${p.name}`),
      (pods) => progress(`warning: pods not ready after ${SERVICES_READY_TIMEOUT_MS / 1000} s (their Services leave them out): ${pods.join(', ')}`));
    progress('checking traffic');
    const checks = await checkTraffic(state, TRAFFIC_TIMEOUT_MS[state.dataplane]);
    checkAlive(state.pods);
    state.phase = 'ready';
    save();
    progress(`ready: ${checks} traffic checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return state;
  } catch (err) {
    if (options.keepOnFailure) {
      progress(`failed; left in place for inspection (--keep-on-failure); remove with: tapir lab down --name ${name}`);
    } else {
      progress('failed; removing what was built');
      await labDown(name, () => {});
    }
    throw err;
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
}

export interface DownSummary { existed: boolean; namespaces: number; processes: number }

export async function labDown(name: string, progress: (message: string) => void): Promise<DownSummary> {
  checkLabName(name);
  const stateDir = stateDirOf(name);
  let state: LabState | undefined;
  try {
    state = loadState(name);
  } catch (err) {
    progress(`${(err as Error).message}; removing by name prefix`);
  }
  const netns = [...new Set([...(state === undefined ? [] : allNetns(state)), ...existingLabNetns(name)])];
  if (state === undefined && netns.length === 0 && !existsSync(stateDir) && labNetnsEtcDirs(name).length === 0) return { existed: false, namespaces: 0, processes: 0 };

  if (state?.dataplane === 'tapir') {
    progress('CNI DEL for pods');
    try {
      const { deletePods } = await import('./network/tapir-dataplane.ts');
      await deletePods(state, (m) => progress(`warning: ${m}`));
    } catch (err) {
      // Whatever went wrong, the lab must still go: stopping the agents drops the ports.
      progress(`warning: CNI DEL skipped: ${(err as Error).message}`);
    }
  }
  // The node daemons before the agents: a daemon plays the kubelet and would start an
  // agent stopped here again at once (its first restart is immediate).
  let processes = 0;
  if (state !== undefined) {
    const daemons = state.nodes.map((n) => n.daemon.pid).filter((pid): pid is number => pid !== null && isAlive(pid)).filter((pid) => belongsToLab(pid, stateDir));
    processes += await stopProcesses(daemons, 1500);
  }
  if (state !== undefined) processes += await stopUpstreamDns(state);
  // Agents next and alone: on SIGTERM they remove their TUN and close the pod TAPs.
  if (state !== undefined) {
    // The one `lab up` started, or the one its daemon started again since.
    const pids = state.nodes.flatMap((n) => [n.agent?.pid ?? null, readDaemonStatus(n)?.agent?.pid ?? null]);
    const agents = [...new Set(pids)].filter((pid): pid is number => pid !== null && isAlive(pid)).filter((pid) => belongsToLab(pid, stateDir));
    if (agents.length > 0) progress(`stopping ${agents.length} agents`);
    processes += await stopProcesses(agents, 3000);
  }
  const recorded = (state?.pods ?? []).map((p) => p.workloadPid).filter((pid): pid is number => pid !== null && isAlive(pid) && belongsToLab(pid, stateDir));
  const remaining = [...new Set([...pidsInNetns(netns), ...recorded])];
  if (remaining.length > 0) progress(`stopping ${remaining.length} processes`);
  processes += await stopProcesses(remaining, 1500);

  const existing = netns.filter((n) => existsSync(`/run/netns/${n}`));
  if (existing.length > 0) progress(`removing ${existing.length} namespaces`);
  // Deleting a namespace destroys its devices; a veth's peer in another namespace goes with it.
  await ipBatch(null, existing.map((n) => `netns delete ${n}`), true);
  // The namespaces' /etc/netns files (resolv.conf), by name: also what a crash left.
  removeLabNetnsEtc(name);
  const stubborn = existingLabNetns(name);
  rmSync(stateDir, { recursive: true, force: true });
  if (stubborn.length > 0) throw new LabError('DOWN_INCOMPLETE', `could not remove namespaces: ${stubborn.join(', ')}`);
  return { existed: true, namespaces: existing.length, processes };
}

/**
 * A recorded PID is only ours if its command line still names the lab's state
 * directory (workloads get --ready FILE, agents --config FILE under it): after a crash
 * and PID reuse, the number may belong to someone else.
 */
function belongsToLab(pid: number, stateDir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${stateDir}/`);
  } catch {
    return false;
  }
}

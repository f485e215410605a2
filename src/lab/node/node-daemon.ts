// A lab node's own daemon, started by `lab up` inside the node namespace:
//   node src/lab/node/node-daemon.ts --config /run/tapir/lab/LAB/nodes/NODE/daemon.json
// It plays the parts of a node that are not the data plane under test:
//  - the kubelet's readiness prober: probes this node's pods and writes their Ready
//    condition into the Pod manifests (./readiness-prober.ts);
//  - kube-proxy, in the iptables and nftables proxy modes: compiles this node's
//    ServiceSnapshot from the manifests with the control code every agent uses
//    (src/control) and installs the equivalent kernel rules (src/kernel-proxy/),
//    plus the health-check node ports;
//  - the load balancer's speaker: announces LoadBalancer addresses (./speaker.ts);
//  - in cluster mode, the kubelet: starts and stops the Pods bound to this node
//    (./kubelet.ts), and on the first node the load-balancer controller
//    (./load-balancer-controller.ts). Started with `nsenter --net` (daemons.ts): the
//    host's mount namespace, so the pod namespaces it adds are the host's.
// The services part is the ServiceController every agent runs, over the same manifest
// directory, with the kernel proxy, the health checks and the speaker subscribed to its
// view. One pass every 200 ms probes pods and writes the status; when the manifests'
// revision moved (every lab writer bumps it) the pass first re-reads them and syncs, so
// the status's revision says the rules and addresses are up to date with it. Exits on
// SIGTERM (its addresses and rules vanish with the namespace when the lab goes).
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { describeServices } from '../../control/describe.ts';
import { ServiceController } from '../../control/service-controller.ts';
import { ManifestDir } from '../../k8s/manifest-dir.ts';
import { KubernetesSource, PROXY_LABEL_SELECTOR } from '../../k8s/api-source.ts';
import type { ObjectSource } from '../../k8s/object-source.ts';
import { Kind, namespacedName } from '../../k8s/objects.ts';
import { parse as parseYaml } from 'yaml';
import { LabApiClient } from '../apiserver/client.ts';
import { ManifestError } from '../../k8s/manifest.ts';
import type { PodObject, ServiceObject } from '../../k8s/objects.ts';
import type { ClusterView } from '../../model/cluster-view.ts';
import type { ServiceSnapshot } from '../../model/service-snapshot.ts';
import { DEFAULT_NODE_PORT_RANGE, parseServiceCidrs, type ServiceCidrs } from '../../model/cluster-defaults.ts';
import { parseCidr, parseCidr6 } from '../../wire/address.ts';
import { AgentSupervisor, type AgentHealth } from './agent-supervisor.ts';
import { readStatusFile, type DaemonConfig, type DaemonStatus } from './daemons.ts';
import { HealthCheckServers } from '../../control/health-check-server.ts';
import { KernelProxy } from '../../kernel-proxy/kernel-proxy.ts';
import { proxySnapshot6 } from '../../kernel-proxy/proxy-plan.ts';
import { containerStatuses, setPodReady } from '../cluster/lab-objects.ts';
import { bumpRevision, MANIFEST_LOCK, readObject, readRevision, withLock, writeObject } from '../cluster/manifests.ts';
import { Prober } from './readiness-prober.ts';
import { sleep } from '../network/shell.ts';
import { logTail } from '../network/processes.ts';
import { announces, Speaker } from './speaker.ts';
import { Kubelet } from './kubelet.ts';
import { LoadBalancerController } from './load-balancer-controller.ts';
import { parsePool, parsePool6 } from '../cluster/load-balancer.ts';
import { loadState } from '../state.ts';
import { LabError } from '../validate.ts';

const PASS_MS = 200;
/**
 * Every revision bump (each lab write) triggers a rescan; between them the manifest
 * directory's own watcher and its cheap periodic check keep it current, so a full
 * rescan here is only a slow safety net (each stats every file: seconds at 20k files).
 * The speaker re-checks its addresses as often, in case one was removed behind its back.
 */
const FULL_RESCAN_MS = 30_000;

function log(message: string): void {
  console.log(`${new Date().toISOString()} ${message}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string' } }, strict: true });
  if (values.config === undefined) throw new Error('--config FILE is required');
  const config = JSON.parse(readFileSync(values.config, 'utf8')) as DaemonConfig;
  const problems = new Set<string>();
  const fileProblems = new Map<string, readonly string[]>();

  // Cluster mode: the kubelet's and kube-proxy's view through the API (this node's Pods
  // only, as the kubelet's field selector); else the manifest directory.
  const api = config.api === null ? null : apiClient(config.api);
  const source: ObjectSource = config.api === null ? new ManifestDir({ dir: config.manifests }) : new KubernetesSource({
    api: { kubeconfig: config.api.kubeconfig },
    kinds: [
      { kind: Kind.SERVICE, labelSelector: PROXY_LABEL_SELECTOR },
      { kind: Kind.ENDPOINT_SLICE, labelSelector: PROXY_LABEL_SELECTOR },
      { kind: Kind.NODE },
      { kind: Kind.POD, fieldSelector: `spec.nodeName=${config.node}` },
    ],
    log: (m) => log(`kubernetes: ${m}`),
  });
  // The daemon's own look at the files' problems (the controller reports them as errors).
  source.watch({
    onChange: () => undefined,
    onSynced: () => undefined,
    onProblems: (file, list) => {
      if (list.length === 0) fileProblems.delete(file);
      else fileProblems.set(file, list);
      for (const p of list) log(`manifest problem: ${p}`);
    },
    onError: (err) => log(`manifest directory: ${err.message}`),
  });
  const controller = new ServiceController({
    source,
    cluster: config.api !== null,
    node: { name: config.node, nodePortAddresses: [config.underlayIP, ...(config.underlayIP6 === undefined ? [] : [config.underlayIP6])] },
    serviceCIDR: parseCidr(config.serviceCIDR)!,
    // Dual-stack: both ranges (manifest mode allocates the IPv6 cluster IPs the IPv6 proxier programs).
    ...(config.serviceCIDRv6 === undefined ? {} : { serviceCIDRs: parseServiceCidrs(`${config.serviceCIDR},${config.serviceCIDRv6}`) as ServiceCidrs }),
    nodePortRange: DEFAULT_NODE_PORT_RANGE,
    // A failed rule install is retried at the next pass, as kube-proxy retries a failed sync.
    retryIntervalMs: PASS_MS,
    onError: (err) => {
      if (!(err instanceof ManifestError)) log(`services: ${err.message}`);
    },
  });

  const proxy = config.proxyMode === 'tapir' ? null : new KernelProxy(config.proxyMode, { clusterCIDR: config.clusterCIDR, serviceCIDR: config.serviceCIDR });
  const health = proxy === null ? null : new HealthCheckServers((m) => problems.add(m));
  const speaker = new Speaker({
    node: config.node, nodes: config.nodes, underlay: parseCidr(config.underlayCIDR, true)!, interface: config.underlayInterface, clientNetns: config.clientNetns,
    ...(config.underlayCIDRv6 === undefined ? {} : { underlay6: parseCidr6(config.underlayCIDRv6, true) }),
  });
  const prober = new Prober();
  // Dual-stack: kube-proxy's IPv6 proxier beside the IPv4 one (ip6tables, `table ip6`).
  const proxy6 = proxy === null || config.clusterCIDRv6 === undefined || config.serviceCIDRv6 === undefined || config.underlayIP6 === undefined
    ? null : new KernelProxy(proxy.mode, { clusterCIDR: config.clusterCIDRv6, serviceCIDR: config.serviceCIDRv6 }, 6);
  let proxyBehind = proxy !== null;
  let proxy6Behind = proxy6 !== null;
  if (proxy6 !== null) {
    let installed6: ServiceSnapshot | undefined;
    controller.subscribe(async ({ snapshot }) => {
      if (snapshot === installed6) return;
      proxy6Behind = true;
      const snapshot6 = proxySnapshot6(snapshot);
      if (await proxy6.sync(snapshot6)) log(`${proxy6.mode} IPv6 rules installed for generation ${snapshot6.generation} (${snapshot6.ports.length} IPv6 service ports)`);
      installed6 = snapshot;
      proxy6Behind = false;
    });
  }
  if (proxy !== null) {
    // Only a new snapshot changes the rules (a view can change for headless services alone).
    let installed: ServiceSnapshot | undefined;
    controller.subscribe(async ({ snapshot }) => {
      if (snapshot === installed) return;
      proxyBehind = true;
      if (await proxy.sync(snapshot)) log(`${proxy.mode} rules installed for generation ${snapshot.generation} (${snapshot.ports.length} service ports)`);
      installed = snapshot;
      proxyBehind = false;
    });
    controller.subscribe(({ snapshot }) => health!.update(snapshot));
  }
  // The kubelet's part: keep this node's agent running (Tapir data plane only).
  const supervisor = config.agent === null ? null : new AgentSupervisor(config.agent, log);
  supervisor?.watch();
  // The election changes with the view and with the nodes' health; reconciles run one
  // at a time. Until the first pass has looked, every node counts as healthy.
  let healthy: ReadonlySet<string> | undefined;
  let speakerProblems: string[] = [];
  let lastSpeak = 0;
  let speaking: Promise<void> = Promise.resolve();
  const speak = (view: ClusterView): Promise<void> => {
    speaking = speaking.catch(() => undefined).then(async () => {
      // Only the Services with an address to announce: describing every one of 10k on
      // each view was a tenth of the daemon's CPU while Services streamed in.
      const services = source.list().filter((o): o is ServiceObject => o.kind === 'Service' && announces(o));
      const keys = new Set(services.map(namespacedName));
      speakerProblems = await speaker.reconcile(services, describeServices({ services: view.services.filter((s) => keys.has(`${s.namespace}/${s.name}`)) }), healthy);
      lastSpeak = Date.now();
    });
    return speaking;
  };
  controller.subscribe(speak);

  let stopping = false;
  const stop = (signal: string): void => {
    log(`${signal}: stopping`);
    stopping = true;
    controller.stop();
    health?.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Read before the first full read of the manifests: a write after it moves the revision.
  let lastRevision = readRevision(config.stateDir);
  await controller.start();
  log(`node daemon of ${config.node} (lab ${config.lab}, proxy mode ${config.proxyMode}), pid ${process.pid}`);

  // The kubelet's node status: Ready once it runs (no lease or heartbeat is modelled).
  if (api !== null) await markNodeReady(api, config.node);
  // Cluster mode: the kubelet starts and stops this node's Pods; the first node's daemon
  // runs the load-balancer controller. Each in a loop of its own: starting a pod takes a
  // while and must hold up neither the prober nor address assignment.
  let kubeletProblems: string[] = [];
  let balancerProblems: string[] = [];
  if (api !== null) {
    const kubelet = new Kubelet({ lab: config.lab, stateDir: config.stateDir, node: config.node, api, log });
    controllerLoop('kubelet', () => stopping, async () => {
      kubeletProblems = await kubelet.sync(source.list().filter((o): o is PodObject => o.kind === 'Pod'));
    });
    const pool = config.loadBalancerPool === '' ? undefined : parsePool(config.loadBalancerPool);
    if (pool !== undefined && config.node === config.nodes[0]) {
      const pool6 = config.loadBalancerPoolV6 === undefined ? undefined : parsePool6(config.loadBalancerPoolV6);
      const balancer = new LoadBalancerController({ api, pool, pool6, poolText: config.loadBalancerPool, log });
      controllerLoop('load-balancer controller', () => stopping, async () => {
        balancerProblems = await balancer.sync(source.list().filter((o): o is ServiceObject => o.kind === 'Service'));
      });
    }
  }
  let lastRescan = Date.now();
  let lastVerdicts = '';
  let verdicts = new Map<string, boolean>();
  let lastFailure = '';
  while (!stopping) {
    const started = Date.now();
    problems.clear();
    let agent: AgentHealth | null = null;
    // One pass failing (a full disk, a tool that hangs, a bug) is logged and retried at
    // the next: the daemon is the node's kubelet and kube-proxy here, and must outlive it.
    try {
      agent = supervisor === null ? null : await supervisor.tick(started);
      if (agent !== null && !agent.answers) {
        problems.add(agent.running
          ? `agent pid ${agent.pid} does not answer on its control socket (${agent.lastExit === null ? 'hung?' : `starting again after an exit; its last words: ${lastError(config.agent!.log)}`}); this node announces nothing until it does`
          : `agent is not running (restarts ${agent.restarts}; next start ${agent.nextStart}); its last words: ${lastError(config.agent!.log)} (${config.agent!.log})`);
      }
      const nowHealthy = healthyNodes(config, agent === null || agent.answers, started);
      const healthChanged = healthy === undefined || [...nowHealthy].join() !== [...healthy].join();
      healthy = nowHealthy;
      const revision = readRevision(config.stateDir);
      if (revision !== lastRevision || started - lastRescan >= FULL_RESCAN_MS) {
        await controller.flush();
        lastRevision = revision;
        lastRescan = started;
      }
      const view = controller.view;
      if (view !== undefined && (healthChanged || started - lastSpeak >= FULL_RESCAN_MS)) await speak(view);
      for (const p of speakerProblems) problems.add(p);
      if (proxyBehind && proxy !== null) problems.add(`${proxy.mode} rules are not installed (see ${config.node}'s daemon log)`);
      if (proxy6Behind && proxy6 !== null) problems.add(`${proxy6.mode} IPv6 rules are not installed (see ${config.node}'s daemon log)`);

      const pods = source.list().filter((o): o is PodObject => o.kind === 'Pod' && o.spec.nodeName === config.node);
      verdicts = await probe(config, prober, pods, started, api);
      const summary = JSON.stringify([...verdicts]);
      if (summary !== lastVerdicts) {
        log(`readiness: ${[...verdicts].map(([k, v]) => `${k}=${v ? 'Ready' : 'NotReady'}`).join(' ') || '(no pods)'}`);
        lastVerdicts = summary;
      }
      lastFailure = '';
    } catch (err) {
      const text = (err as Error).message;
      if (text !== lastFailure) log(`pass failed (retrying every ${PASS_MS} ms): ${(err as Error).stack ?? text}`);
      lastFailure = text;
      problems.add(`the node daemon's last pass failed: ${text}`);
    }
    for (const list of fileProblems.values()) for (const p of list) problems.add(p);
    for (const p of [...kubeletProblems, ...balancerProblems]) problems.add(p);
    writeStatus(config, {
      pid: process.pid,
      revision: lastRevision,
      updatedAt: new Date().toISOString(),
      announced: speaker.announced,
      proxy: proxy?.status ?? null,
      ...(proxy6 === null ? {} : { proxy6: proxy6.status }),
      healthCheckNodePorts: health?.ports ?? [],
      pods: Object.fromEntries(verdicts),
      problems: [...problems],
      agent,
    });
    await sleep(Math.max(10, PASS_MS - (Date.now() - started)));
  }
}

/** Runs `pass` every PASS_MS until `stopped`; a failed pass is logged (once per message) and retried. */
function controllerLoop(name: string, stopped: () => boolean, pass: () => Promise<void>): void {
  void (async () => {
    let lastFailure = '';
    while (!stopped()) {
      const started = Date.now();
      try {
        await pass();
        lastFailure = '';
      } catch (err) {
        const text = (err as Error).message;
        if (text !== lastFailure) log(`${name}: pass failed (retrying every ${PASS_MS} ms): ${(err as Error).stack ?? text}`);
        lastFailure = text;
      }
      await sleep(Math.max(10, PASS_MS - (Date.now() - started)));
    }
  })();
}

/**
 * A peer's daemon status older than this means the daemon is gone or stuck: its node
 * leaves the election. Passes are 200 ms apart; a slow sync can stretch one to seconds.
 */
const PEER_STALE_MS = 5000;

/** The nodes fit to announce: this one by its own look, the others by their status files. */
function healthyNodes(config: DaemonConfig, selfHealthy: boolean, now: number): Set<string> {
  const out = new Set<string>();
  for (const peer of config.peers) {
    if (peer.node === config.node) {
      if (selfHealthy) out.add(peer.node);
      continue;
    }
    const status = readStatusFile(peer.status);
    // Not written yet (the daemon is starting): in, as before there was health. A
    // daemon that wrote once and then stopped goes stale.
    if (status === undefined || (now - Date.parse(status.updatedAt) < PEER_STALE_MS && status.agent?.answers !== false)) out.add(peer.node);
  }
  return out;
}

/** Probes this node's pods and writes every changed Ready condition to the Pod manifests. */
async function probe(config: DaemonConfig, prober: Prober, pods: PodObject[], now: number, api: LabApiClient | null): Promise<Map<string, boolean>> {
  let lab;
  try {
    lab = loadState(config.lab);
  } catch {
    lab = undefined;
  }
  const joined = pods.flatMap((object) => {
    const state = lab?.pods.find((p) => p.namespace === object.metadata.namespace && p.name === object.metadata.name);
    return state === undefined ? [] : [{ object, state }];
  });
  prober.update(joined, now);
  const verdicts = await prober.tick(now);
  const changed = joined.filter(({ object }) => {
    const verdict = verdicts.get(`${object.metadata.namespace}/${object.metadata.name}`);
    return verdict !== undefined && verdict !== object.status.ready;
  });
  if (changed.length > 0 && api !== null) {
    // The kubelet's status update: the conditions merge by type (strategic merge patch).
    for (const { object } of changed) {
      const ready = verdicts.get(`${object.metadata.namespace}/${object.metadata.name}`)!;
      const value = ready ? 'True' : 'False';
      const at = new Date().toISOString();
      const res = await api.request('PATCH', `/api/v1/namespaces/${encodeURIComponent(object.metadata.namespace)}/pods/${encodeURIComponent(object.metadata.name)}/status`,
        { status: {
          conditions: [{ type: 'ContainersReady', status: value, lastTransitionTime: at }, { type: 'Ready', status: value, lastTransitionTime: at }],
          containerStatuses: containerStatuses(object.spec.containers.map((c) => c.name), ready, at),
        } },
        'application/strategic-merge-patch+json');
      // 404: deleted meanwhile. Anything else is retried at the next pass (the verdict still differs).
      if (res.status !== 200 && res.status !== 404) throw new Error(`writing the Ready condition of pod ${object.metadata.namespace}/${object.metadata.name}: ${res.status} ${String(res.body.message ?? '')}`);
    }
  } else if (changed.length > 0) {
    // A long `lab apply` or `lab delete` may hold the lock for seconds: the verdicts are
    // written at a later pass then, and the daemon keeps probing meanwhile.
    try {
      await withLock(config.stateDir, MANIFEST_LOCK, 1000, () => {
        let wrote = false;
        for (const { object } of changed) {
          // Re-read under the lock: `lab apply/delete` may have rewritten or removed it.
          const raw = readObject(config.manifests, 'Pod', object.metadata.namespace, object.metadata.name);
          if (raw === undefined) continue;
          if (setPodReady(raw, verdicts.get(`${object.metadata.namespace}/${object.metadata.name}`)!)) {
            writeObject(config.manifests, raw);
            wrote = true;
          }
        }
        if (wrote) bumpRevision(config.stateDir);
      });
    } catch (err) {
      if (!(err instanceof LabError && err.code === 'TAPIR_LAB_BUSY')) throw err;
      // The Pods' Ready conditions stay as they were; the prober's verdicts differ from
      // them still, so the next pass tries again.
    }
  }
  return verdicts;
}

async function markNodeReady(api: LabApiClient, node: string): Promise<void> {
  const now = new Date().toISOString();
  const res = await api.request('PATCH', `/api/v1/nodes/${encodeURIComponent(node)}/status`, {
    status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'the lab node daemon is posting ready status', lastHeartbeatTime: now, lastTransitionTime: now }] },
  }, 'application/strategic-merge-patch+json');
  if (res.status !== 200) log(`writing node ${node}'s Ready condition: ${res.status} ${String(res.body.message ?? '')}`);
}

/** The lab's admin client for the status writes, with the token of the lab's kubeconfig. */
function apiClient(api: NonNullable<DaemonConfig['api']>): LabApiClient {
  const kubeconfig = parseYaml(readFileSync(api.kubeconfig, 'utf8')) as { users: { user: { token: string } }[] };
  return new LabApiClient(api.server, api.caFile, kubeconfig.users[0]!.user.token);
}

/** The agent log's last error line (what a crash loop's `kubectl logs` would show first). */
function lastError(file: string): string {
  const lines = logTail(file, 40).split('\n').map((l) => l.replace(/^\s*\| /, '')).filter((l) => l.trim() !== '');
  return (lines.reverse().find((l) => /ERROR|FATAL|tapir:|forbidden/i.test(l)) ?? lines[0] ?? '(empty log)').trim();
}

function writeStatus(config: DaemonConfig, status: DaemonStatus): void {
  const tmp = `${config.status}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(status, null, 2)}\n`);
  renameSync(tmp, config.status);
}

main().catch((err: unknown) => {
  log(`node daemon: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});

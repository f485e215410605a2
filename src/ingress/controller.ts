// The Ingress controller's control side, kube-proxy's model again: one object source
// (the Kubernetes API, or a manifest directory) whose events are only recorded; the
// Services and their endpoints compiled into a ClusterView by the same ServiceController
// the agent runs; a coalescing runner whose sync compiles the complete IngressConfig
// (compile.ts) from the Ingresses, IngressClasses, TLS Secrets and the last view, and
// hands it to the proxy whole when it differs from the last one. Nothing is handed over
// before every kind has synced once (an Ingress seen before its Service would be a 503
// that was never true). Afterwards, in cluster mode: status.loadBalancer.ingress of every
// Ingress we serve is set to the published Service's load-balancer addresses, IPv4 and IPv6 (as
// ingress-nginx's --publish-service), and each new problem of an Ingress becomes a
// Warning Event on it; in both modes each problem is logged once, while it lasts.
import { HeapTrim, type HeapTrimmer } from '../control/heap-trim.ts';
import { ServiceController } from '../control/service-controller.ts';
import { SyncRunner } from '../control/runner.ts';
import { KubernetesSource } from '../k8s/api-source.ts';
import type { KubeApi, KubeAuth } from '../k8s/kube-api.ts';
import { ManifestDir } from '../k8s/manifest-dir.ts';
import type { ObjectSource } from '../k8s/object-source.ts';
import { Kind, namespacedName, type IngressClassObject, type IngressObject, type SecretObject } from '../k8s/objects.ts';
import { TLS_SECRET_TYPE } from '../k8s/validate-networking.ts';
import type { ClusterView } from '../model/cluster-view.ts';
import { ipv4ToString } from '../wire/address.ts';
import { classifyIngress, compileIngresses, type IngressProblem } from './compile.ts';
import { LeaderElector } from './leader.ts';
import type { IngressConfig } from './model.ts';

/** What takes each new configuration: the proxy (IngressProxy.setConfig). */
export interface IngressConfigSink {
  setConfig(config: IngressConfig): void;
}

export type IngressSourceOptions = { kubernetes: KubeAuth | KubeApi } | { manifests: string };

export interface IngressControllerOptions {
  source: IngressSourceOptions;
  /** Our IngressClass (--class). */
  className: string;
  /** "namespace/name" of the LoadBalancer Service whose addresses the Ingresses get (cluster mode); null = none. */
  publishService: string | null;
  sink: IngressConfigSink;
  log(level: 'info' | 'warn' | 'error', message: string): void;
  /** Default 50 ms: changes within it become one sync. */
  minSyncIntervalMs?: number;
  /** A stalled watch is restarted after this long (default 150 s, as the agent). */
  watchIdleMs?: number;
  /**
   * Cluster mode with several replicas: only the holder of this Lease writes status and
   * Events (leader.ts). Absent: this replica always writes.
   */
  election?: { namespace: string; name: string; identity?: string; leaseDurationMs?: number; retryMs?: number };
  /**
   * Told of every configuration handed to the sink, to give back the heap a large one
   * left (the agent's HeapTrim, by default). A test hook.
   */
  heapTrim?: HeapTrimmer;
}

/** One Ingress as `tapir ingress status` shows it. */
export interface IngressStatus {
  name: string;
  ours: boolean;
  /** status.loadBalancer.ingress as last seen (cluster mode) or as it would be (manifest mode). */
  addresses: string[];
  problems: string[];
}

export interface ControllerStatus {
  className: string;
  /** This replica writes status and Events (always true without leader election). */
  leader: boolean;
  synced: boolean;
  generation: number;
  /** Date.now() when the proxy last got a new configuration; 0 = never. */
  configAt: number;
  syncs: number;
  publishService: string | null;
  addresses: string[];
  hosts: number;
  ingresses: IngressStatus[];
  /** Problems of inputs that failed validation (their last good version is in force). */
  inputProblems: string[];
}

/** How long a failed status write or Event waits before the next sync tries again. */
const STATUS_RETRY_MS = 5_000;

export class IngressController {
  readonly #opts: IngressControllerOptions;
  readonly source: ObjectSource;
  readonly #services: ServiceController;
  readonly #runner: SyncRunner;
  readonly #heapTrim: HeapTrimmer;
  readonly #api: KubeApi | null;
  readonly #elector: LeaderElector | null = null;
  readonly #ingresses = new Map<string, IngressObject>();
  readonly #classes = new Map<string, IngressClassObject>();
  readonly #secrets = new Map<string, SecretObject>();
  readonly #unsynced = new Set<Kind>([Kind.INGRESS, Kind.INGRESS_CLASS, Kind.SECRET]);
  readonly #inputProblems = new Map<string, readonly string[]>();
  /** Problems logged and still present. */
  #reported = new Set<string>();
  /** Problems recorded as Events by this replica and still present. */
  readonly #evented = new Set<string>();
  #problems: IngressProblem[] = [];
  #ours = new Set<string>();
  #view: ClusterView | undefined;
  #generation = 0;
  #fingerprint = '';
  #configAt = 0;
  #hosts = 0;
  #unwatch: () => void = () => undefined;
  #retry: NodeJS.Timeout | null = null;
  #firstConfig: Promise<void>;
  #firstConfigDone: () => void = () => undefined;

  constructor(opts: IngressControllerOptions) {
    this.#opts = opts;
    this.#heapTrim = opts.heapTrim ?? new HeapTrim({ log: (m) => opts.log('info', m) });
    if ('kubernetes' in opts.source) {
      const k = new KubernetesSource({
        api: opts.source.kubernetes,
        // Every Service (headless ones too: ingress-nginx proxies to their endpoints), every slice.
        kinds: [
          { kind: Kind.SERVICE }, { kind: Kind.ENDPOINT_SLICE }, { kind: Kind.INGRESS }, { kind: Kind.INGRESS_CLASS },
          { kind: Kind.SECRET, fieldSelector: `type=${TLS_SECRET_TYPE}` },
        ],
        log: (m) => opts.log('info', `kubernetes: ${m}`),
        ...(opts.watchIdleMs === undefined ? {} : { watchIdleMs: opts.watchIdleMs }),
      });
      this.source = k;
      this.#api = k.api;
    } else {
      this.source = new ManifestDir({ dir: opts.source.manifests });
      this.#api = null;
    }
    if (this.#api !== null && opts.election !== undefined) {
      this.#elector = new LeaderElector({
        api: this.#api, ...opts.election,
        onChange: () => this.#runner.run(),
        log: (m) => opts.log('info', m),
      });
    }
    this.#services = new ServiceController({
      source: this.source,
      cluster: this.#api !== null,
      node: { name: '' },
      minSyncIntervalMs: opts.minSyncIntervalMs ?? 50,
      onError: (err) => opts.log('warn', `services: ${err.message}`),
    });
    this.#services.subscribe((view) => {
      this.#view = view;
      this.#runner.run();
    });
    this.#runner = new SyncRunner({
      sync: () => this.#sync(),
      minIntervalMs: opts.minSyncIntervalMs ?? 50,
      maxIntervalMs: 60_000,
      retryIntervalMs: 1000,
      onError: (err) => opts.log('error', `ingress sync failed (retrying): ${err.message}`),
    });
    this.#firstConfig = new Promise((resolve) => { this.#firstConfigDone = resolve; });
  }

  /** Starts watching; resolves once the proxy has its first configuration. */
  async start(): Promise<void> {
    this.#runner.start();
    this.#unwatch = this.source.watch({
      onChange: ({ previous, current }) => {
        const obj = current ?? previous;
        if (obj === undefined) return;
        const key = namespacedName(obj);
        if (obj.kind === Kind.INGRESS) setOrDelete(this.#ingresses, key, current as IngressObject | undefined);
        else if (obj.kind === Kind.INGRESS_CLASS) setOrDelete(this.#classes, key, current as IngressClassObject | undefined);
        else if (obj.kind === Kind.SECRET) setOrDelete(this.#secrets, key, current as SecretObject | undefined);
        else return;
        if (this.#unsynced.size === 0) this.#runner.run();
      },
      onSynced: (kind) => {
        if (this.#unsynced.delete(kind) && this.#unsynced.size === 0) this.#runner.run();
      },
      onProblems: (input, problems) => {
        if (problems.length === 0) this.#inputProblems.delete(input);
        else {
          this.#inputProblems.set(input, problems);
          for (const p of problems) this.#opts.log('warn', p);
        }
      },
      onError: (err) => this.#opts.log('error', err.message),
    });
    await this.#services.start();
    this.#elector?.start();
    this.#runner.run();
    await this.#firstConfig;
  }

  /** Stops watching (and gives up the Lease, so another replica takes over the writes at once). */
  async stop(): Promise<void> {
    await this.#elector?.stop();
    this.#unwatch();
    this.#services.stop();
    this.#runner.stop();
    this.#heapTrim.stop();
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#firstConfigDone();
  }

  /** For `tapir ingress status` (the /status endpoint) and `tapir lab status`. */
  status(): ControllerStatus {
    const addresses = this.#addresses();
    const byIngress = new Map<string, string[]>();
    for (const p of this.#problems) setDefault(byIngress, p.ingress).push(p.message);
    const ingresses = [...this.#ingresses.values()].sort((a, b) => (namespacedName(a) < namespacedName(b) ? -1 : 1)).map((ing) => {
      const key = namespacedName(ing);
      const ours = this.#ours.has(key);
      return { name: key, ours, addresses: this.#api !== null ? ing.status.loadBalancerIPs : ours ? addresses : [], problems: byIngress.get(key) ?? [] };
    });
    return {
      className: this.#opts.className,
      leader: this.#elector?.leader ?? true,
      synced: this.#unsynced.size === 0 && this.#view !== undefined,
      generation: this.#generation,
      configAt: this.#configAt,
      syncs: this.#runner.syncs,
      publishService: this.#opts.publishService,
      addresses,
      hosts: this.#hosts,
      ingresses,
      inputProblems: [...this.#inputProblems.values()].flat(),
    };
  }

  /** Syncs now (tests); resolves after the sync. */
  async flush(): Promise<void> {
    await this.#runner.runNow();
  }

  #addresses(): string[] {
    const key = this.#opts.publishService;
    if (key === null || this.#view === undefined) return [];
    const svc = this.#view.services.find((s) => s.key === key);
    if (svc === undefined) return [];
    // Both families of a dual-stack Service's load balancer (ingress-nginx publishes every
    // status.loadBalancer.ingress entry); sorted as the written status is compared.
    return [...svc.loadBalancerIngress.map((l) => ipv4ToString(l.ip)), ...svc.loadBalancerIngress6.map((l) => l.ip)].sort();
  }

  async #sync(): Promise<void> {
    if (this.#unsynced.size > 0 || this.#view === undefined) return;
    const result = compileIngresses({
      ingresses: [...this.#ingresses.values()],
      classes: [...this.#classes.values()],
      secrets: this.#secrets,
      view: this.#view,
    }, { className: this.#opts.className, generation: this.#generation + 1 });
    this.#problems = result.problems;
    this.#ours = new Set(result.ours);
    const fingerprint = fingerprintOf(result.config);
    if (fingerprint !== this.#fingerprint) {
      this.#opts.sink.setConfig(result.config);
      this.#heapTrim.afterSync();
      this.#generation = result.config.generation;
      this.#fingerprint = fingerprint;
      this.#configAt = Date.now();
      this.#hosts = result.config.hosts.length;
      this.#opts.log('info', `configuration ${this.#generation}: ${result.config.hosts.length} hosts, ${result.config.hosts.reduce((n, h) => n + h.paths.length, 0)} paths, ${result.config.certificates.size} certificates, ${result.ours.length} Ingresses of class ${this.#opts.className}`);
    }
    this.#firstConfigDone();
    this.#reportProblems(result.problems);
    const current = new Set(result.problems.map((p) => p.message));
    for (const m of this.#evented) if (!current.has(m)) this.#evented.delete(m);
    if (this.#api !== null && (this.#elector?.leader ?? true)) {
      // Each problem once as an Event while it lasts (a new leader records those it has not).
      const events = result.problems.filter((p) => !this.#evented.has(p.message));
      for (const p of events) this.#evented.add(p.message);
      const ok = (await Promise.all([this.#writeStatuses(this.#api), ...events.map((p) => this.#event(this.#api!, p))])).every(Boolean);
      if (!ok && this.#retry === null) {
        this.#retry = setTimeout(() => { this.#retry = null; this.#runner.run(); }, STATUS_RETRY_MS);
        this.#retry.unref();
      }
    }
  }

  /** Logs each problem once while it lasts. */
  #reportProblems(problems: readonly IngressProblem[]): void {
    const now = new Set<string>();
    for (const p of problems) {
      now.add(p.message);
      if (!this.#reported.has(p.message)) this.#opts.log('warn', p.message);
    }
    this.#reported = now;
  }

  /**
   * Sets status.loadBalancer.ingress of our Ingresses to the published addresses, and
   * clears it of Ingresses no longer ours that still show exactly those addresses (their
   * class changed, or our class stopped being the default; after a restart too); false
   * if a write failed.
   */
  async #writeStatuses(api: KubeApi): Promise<boolean> {
    if (this.#opts.publishService === null) return true;
    const addresses = this.#addresses();
    let ok = true;
    for (const ing of this.#ingresses.values()) {
      const key = namespacedName(ing);
      const ours = this.#ours.has(key);
      const current = [...ing.status.loadBalancerIPs].sort();
      const want = ours ? addresses : [];
      if (!ours && (addresses.length === 0 || !sameList(current, addresses))) continue;
      if (sameList(current, want)) continue;
      const path = `/apis/networking.k8s.io/v1/namespaces/${encodeURIComponent(ing.metadata.namespace)}/ingresses/${encodeURIComponent(ing.metadata.name)}/status`;
      const body = { status: { loadBalancer: want.length === 0 ? { ingress: null } : { ingress: want.map((ip) => ({ ip })) } } };
      try {
        await api.send('PATCH', path, body, 'application/merge-patch+json');
        this.#opts.log('info', `Ingress ${key}: status.loadBalancer.ingress ${want.length === 0 ? 'cleared' : `set to ${want.join(', ')}`}`);
      } catch (err) {
        ok = false;
        this.#opts.log('warn', `Ingress ${key}: cannot write its status: ${(err as Error).message}`);
      }
    }
    return ok;
  }

  /** A Warning Event on the Ingress (what `kubectl describe ingress` shows). */
  async #event(api: KubeApi, p: IngressProblem): Promise<boolean> {
    const ing = this.#ingresses.get(p.ingress);
    if (ing === undefined) return true;
    const now = new Date().toISOString();
    const ns = ing.metadata.namespace;
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${ing.metadata.name}.`, namespace: ns },
      involvedObject: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', namespace: ns, name: ing.metadata.name, resourceVersion: ing.metadata.resourceVersion },
      reason: 'IngressProblem',
      message: p.message,
      type: 'Warning',
      source: { component: 'tapir-ingress-controller' },
      reportingComponent: 'tapir.dev/ingress-controller',
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    try {
      await api.send('POST', `/api/v1/namespaces/${encodeURIComponent(ns)}/events`, event);
      return true;
    } catch (err) {
      this.#opts.log('warn', `Ingress ${p.ingress}: cannot record an Event: ${(err as Error).message}`);
      return true; // an Event is best effort: not retried
    }
  }
}

/** Whether an Ingress belongs to the controller of class `className` (for `lab status`). */
export { classifyIngress };

function setOrDelete<T>(map: Map<string, T>, key: string, value: T | undefined): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}

function setDefault(map: Map<string, string[]>, key: string): string[] {
  let list = map.get(key);
  if (list === undefined) {
    list = [];
    map.set(key, list);
  }
  return list;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The configuration without its generation: equal fingerprints need no new hand-over. */
function fingerprintOf(c: IngressConfig): string {
  return JSON.stringify({ hosts: c.hosts, defaultBackend: c.defaultBackend, certificates: [...c.certificates.values()] });
}

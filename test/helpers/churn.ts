// Service churn against a running lab, shared by bench/churn-soak.ts (10 minutes, sampled)
// and test/lab-churn.test.ts (a short run). The churn writes the lab's manifest directory
// the way the API server stores objects (one file per object, under the writers' lock,
// then a revision bump for the node daemons), so it can change something every 100 ms:
// `tapir lab apply` starts a Node.js process and waits for the node daemons each time.
//
// What changes, one step at a time, round-robin:
// - endpoints: the tested Service `soak` selects `soak: in`; a fixed set of pods is
//   labelled in and out of it (at least `minEndpoints` stay in). The pods never stop,
//   so whatever view an agent has at any moment, every endpoint in it is alive, and an
//   established flow to a pod that just left keeps its conntrack entry (TCP is never
//   flushed on an endpoint change, as in kube-proxy). A failed request is a Tapir bug.
// - services: other Services (ClusterIP, every third a NodePort; one to three ports,
//   TCP and UDP) are created and deleted, at most `maxOtherServices` at a time.
// - ports: a second port (81, node port 30091) is added to and removed from `soak`;
//   port 80, the one the clients use, never changes.
// Cluster IPs and node ports are always written explicitly (as `lab apply` stores them),
// from ranges the lab's own Services do not use, so no allocation ever moves.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ControlClient } from '../../src/agent/control-client.ts';
import { LAB_ROOT } from '../../src/lab/state.ts';
import { bumpRevision, loadObjects, MANIFEST_LOCK, readObject, removeObject, withLock, writeObject, type RawObject } from '../../src/lab/cluster/manifests.ts';

export const SOAK_SERVICE = 'soak';
export const SOAK_NODE_PORT = 30090;
const EXTRA_NODE_PORT = 30091;
const LABEL = 'soak';

export interface ChurnOptions {
  /** The lab's state directory (/run/tapir/lab/NAME). */
  stateDir: string;
  /** Pods labelled in and out of `soak` (they keep running throughout). */
  endpointPods: string[];
  minEndpoints?: number;
  maxOtherServices?: number;
  /** Deterministic choices for a given seed. */
  seed?: number;
}

export interface ChurnCounts {
  steps: number;
  endpointsIn: number;
  endpointsOut: number;
  servicesCreated: number;
  servicesDeleted: number;
  portsAdded: number;
  portsRemoved: number;
}

interface OtherService { name: string; slot: number }

export class Churn {
  readonly stateDir: string;
  readonly manifests: string;
  readonly endpointPods: readonly string[];
  readonly counts: ChurnCounts = { steps: 0, endpointsIn: 0, endpointsOut: 0, servicesCreated: 0, servicesDeleted: 0, portsAdded: 0, portsRemoved: 0 };
  /** The cluster IP of `soak` (set by setup()). */
  clusterIP = '';
  readonly #minEndpoints: number;
  readonly #maxOthers: number;
  readonly #in = new Set<string>();
  readonly #others: OtherService[] = [];
  #freeSlots: number[] = [];
  #soakIPIndex = 0;
  #extraPort = false;
  #rng: number;
  #nextOther = 0;

  constructor(opts: ChurnOptions) {
    this.stateDir = opts.stateDir;
    this.manifests = join(opts.stateDir, 'manifests');
    this.endpointPods = [...opts.endpointPods];
    this.#minEndpoints = Math.max(1, Math.min(opts.minEndpoints ?? 1, this.endpointPods.length));
    this.#maxOthers = opts.maxOtherServices ?? 16;
    this.#rng = (opts.seed ?? 1) >>> 0 || 1;
  }

  /** xorshift32: the same run for the same seed. */
  #random(): number {
    let x = this.#rng;
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    this.#rng = x;
    return x / 0x100000000;
  }

  #pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.#random() * xs.length)]!;
  }

  /**
   * Writes `soak` (ClusterIP + NodePort 30090, port 80 -> the pods' "http") and labels
   * every endpoint pod in. Cluster IPs come from 10.96.250.0/24, minus any the lab uses.
   */
  async setup(): Promise<void> {
    const used = new Set<string>();
    for (const o of loadObjects(this.manifests).objects) if (o.kind === 'Service') used.add(o.spec.clusterIP);
    for (let i = 1; i < 255; i++) if (!used.has(`10.96.250.${i}`)) this.#freeSlots.push(i);
    if (this.#freeSlots.length < this.#maxOthers + 1) throw new Error('10.96.250.0/24 is taken by the lab\'s own Services');
    this.#soakIPIndex = this.#freeSlots.shift()!;
    this.clusterIP = `10.96.250.${this.#soakIPIndex}`;
    await this.#write(() => {
      writeObject(this.manifests, this.#soakService());
      for (const pod of this.endpointPods) {
        this.#label(pod, 'in');
        this.#in.add(pod);
      }
    });
  }

  /** One change. */
  async step(): Promise<void> {
    const kind = this.counts.steps % 4;
    this.counts.steps++;
    if (kind === 0 || kind === 2) await this.#moveEndpoint();
    else if (kind === 1) await this.#churnService();
    else await this.#togglePort();
  }

  /** The endpoint pods currently labelled in. */
  get endpoints(): string[] {
    return [...this.#in].sort();
  }

  /** Removes every other Service and the extra port; `soak` and the labels stay. */
  async finish(): Promise<void> {
    await this.#write(() => {
      for (const o of this.#others.splice(0)) {
        removeObject(this.manifests, 'Service', 'default', o.name);
        this.#freeSlots.push(o.slot);
        this.counts.servicesDeleted++;
      }
      if (this.#extraPort) {
        this.#extraPort = false;
        writeObject(this.manifests, this.#soakService());
        this.counts.portsRemoved++;
      }
    });
  }

  async #moveEndpoint(): Promise<void> {
    const out = this.endpointPods.filter((p) => !this.#in.has(p));
    const remove = this.#in.size > this.#minEndpoints && (out.length === 0 || this.#random() < 0.5);
    const pod = remove ? this.#pick([...this.#in]) : this.#pick(out);
    await this.#write(() => this.#label(pod, remove ? 'out' : 'in'));
    if (remove) { this.#in.delete(pod); this.counts.endpointsOut++; } else { this.#in.add(pod); this.counts.endpointsIn++; }
  }

  async #churnService(): Promise<void> {
    const create = this.#others.length === 0 || (this.#others.length < this.#maxOthers && this.#random() < 0.5);
    if (create) {
      const slot = this.#freeSlots.shift()!;
      const other = { name: `soak-other-${this.#nextOther++}`, slot };
      await this.#write(() => writeObject(this.manifests, this.#otherService(other)));
      this.#others.push(other);
      this.counts.servicesCreated++;
    } else {
      const i = Math.floor(this.#random() * this.#others.length);
      const [other] = this.#others.splice(i, 1);
      await this.#write(() => removeObject(this.manifests, 'Service', 'default', other!.name));
      this.#freeSlots.push(other!.slot);
      this.counts.servicesDeleted++;
    }
  }

  async #togglePort(): Promise<void> {
    this.#extraPort = !this.#extraPort;
    await this.#write(() => writeObject(this.manifests, this.#soakService()));
    if (this.#extraPort) this.counts.portsAdded++; else this.counts.portsRemoved++;
  }

  /** Pod labels change in the stored object (status and all else kept), like a kubectl label. */
  #label(pod: string, value: 'in' | 'out'): void {
    const raw = readObject(this.manifests, 'Pod', 'default', pod);
    if (raw === undefined) throw new Error(`pod default/${pod} has no manifest in ${this.manifests}`);
    const metadata = raw.metadata as { labels?: Record<string, string> };
    metadata.labels = { ...metadata.labels, [LABEL]: value };
    writeObject(this.manifests, raw);
  }

  #soakService(): RawObject {
    const ports: Record<string, unknown>[] = [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP', nodePort: SOAK_NODE_PORT }];
    if (this.#extraPort) ports.push({ name: 'extra', port: 81, targetPort: 'http', protocol: 'TCP', nodePort: EXTRA_NODE_PORT });
    return {
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: SOAK_SERVICE, namespace: 'default' },
      spec: { type: 'NodePort', clusterIP: this.clusterIP, selector: { [LABEL]: 'in' }, ports },
    };
  }

  #otherService(o: OtherService): RawObject {
    const nodePort = o.slot % 3 === 0;
    const all = [
      { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' },
      { name: 'tcp', port: 9000, targetPort: 'tcp-echo', protocol: 'TCP' },
      { name: 'udp', port: 9000, targetPort: 'udp-echo', protocol: 'UDP' },
    ];
    const ports = all.slice(0, 1 + Math.floor(this.#random() * 3)).map((p, i) => (nodePort ? { ...p, nodePort: 31000 + o.slot * 3 + i } : p));
    return {
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: o.name, namespace: 'default' },
      spec: { type: nodePort ? 'NodePort' : 'ClusterIP', clusterIP: `10.96.250.${o.slot}`, selector: { app: 'web' }, ports },
    };
  }

  /** One batch of writes under the lab writers' lock, then the revision bump. */
  async #write(fn: () => void): Promise<void> {
    await withLock(this.stateDir, MANIFEST_LOCK, 10_000, () => {
      fn();
      bumpRevision(this.stateDir);
    });
  }
}

// ---- the clients ----

/**
 * Requests to each URL in turn (a new connection each, 2 s timeout), paced to `rate`
 * per second, for `seconds`. Prints `S time ok failed slow` (running totals) every
 * second, `F time url error` per failed request, and `P {pod: answers}` at the end.
 * Slow means answered after more than 1 s (a retransmitted SYN).
 */
export const HTTP_CLIENT = `
import json, sys, time, urllib.request
urls, seconds, rate = sys.argv[1].split(','), float(sys.argv[2]), float(sys.argv[3])
start = time.time(); end = start + seconds; tick = start + 1; nxt = start
ok = bad = slow = i = 0; served = {}
while True:
    now = time.time()
    if now >= end: break
    if now < nxt:
        time.sleep(min(nxt, end) - now); continue
    nxt = max(nxt + 1 / rate, now)
    url = urls[i % len(urls)]; i += 1
    t0 = time.time()
    try:
        pod = json.loads(urllib.request.urlopen(url, timeout=2).read())['pod']
        served[pod] = served.get(pod, 0) + 1; ok += 1
        if time.time() - t0 > 1: slow += 1
    except Exception as e:
        bad += 1
        print('F', '%.3f' % t0, url, repr(e)[:300], flush=True)
    if time.time() >= tick:
        print('S', '%.3f' % time.time(), ok, bad, slow, flush=True)
        while tick <= time.time(): tick += 1
print('S', '%.3f' % time.time(), ok, bad, slow, flush=True)
print('P', json.dumps(served), flush=True)
`;

export interface ClientReport {
  ok: number;
  failed: number;
  slow: number;
  /** [unix seconds, url, error] per failed request. */
  failures: [number, string, string][];
  /** Answers per pod (only once the client has ended). */
  servedBy: Record<string, number>;
  /** Whether the final line came (the client ran to its end). */
  finished: boolean;
}

export function parseClient(output: string): ClientReport {
  const r: ClientReport = { ok: 0, failed: 0, slow: 0, failures: [], servedBy: {}, finished: false };
  for (const line of output.split('\n')) {
    if (line.startsWith('S ')) {
      const [, , ok, failed, slow] = line.split(' ');
      r.ok = Number(ok); r.failed = Number(failed); r.slow = Number(slow);
    } else if (line.startsWith('F ')) {
      const [, t, url, ...error] = line.split(' ');
      r.failures.push([Number(t), url!, error.join(' ')]);
    } else if (line.startsWith('P ')) {
      r.servedBy = JSON.parse(line.slice(2)) as Record<string, number>;
      r.finished = true;
    }
  }
  return r;
}

// ---- what a lab holds ----

export interface NodeSample {
  node: string;
  pid: number;
  restarts: number;
  rssMiB: number;
  /** RssAnon: RSS without file pages (the node binary's code paged in as it runs). */
  anonMiB: number;
  heapUsedMiB: number;
  fds: number;
  conntrack: number;
}

export interface LabSample {
  /** Unix seconds. */
  time: number;
  nodes: NodeSample[];
  /** Network namespaces named tl-LAB-*. */
  netns: number;
  /** TAP and TUN devices in all of them. */
  taps: number;
  tuns: number;
}

function execText(argv: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${argv.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

export function labNetns(lab: string): string[] {
  return existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith(`tl-${lab}-`)).sort() : [];
}

function fdCount(pid: number): number {
  try { return readdirSync(`/proc/${pid}/fd`).length; } catch { return NaN; }
}

/** VmRSS and RssAnon of /proc/PID/status, MiB (NaN once the process is gone). */
function rssMiB(pid: number): { rss: number; anon: number } {
  let text = '';
  try { text = readFileSync(`/proc/${pid}/status`, 'utf8'); } catch { /* gone */ }
  const field = (name: string): number => {
    const m = new RegExp(`${name}:\\s+(\\d+) kB`).exec(text);
    return m === null ? NaN : Number(m[1]) / 1024;
  };
  return { rss: field('VmRSS'), anon: field('RssAnon') };
}

interface StateNode { name: string; agent: { pid: number | null; controlSocket: string } | null; daemon: { status: string } }

/**
 * One look at the lab: per agent its pid, restarts, RSS (/proc), heap and conntrack
 * entries (the control socket's stats) and open fds; the lab's namespaces and the
 * TAP/TUN devices in them (`ip -d link` per namespace). The pid and restarts come from
 * the node daemon's status file (it restarts a dead agent), not from `tapir lab status`,
 * which asks every agent over its socket: that connection could still be open in the
 * agent when its fds are counted.
 */
export async function sampleLab(lab: string): Promise<LabSample> {
  const state = JSON.parse(readFileSync(join(LAB_ROOT, lab, 'state.json'), 'utf8')) as { nodes: StateNode[] };
  const nodes: NodeSample[] = [];
  for (const n of state.nodes) {
    let supervised: { pid: number | null; restarts: number } | undefined;
    try { supervised = (JSON.parse(readFileSync(n.daemon.status, 'utf8')) as { agent?: { pid: number | null; restarts: number } }).agent; } catch { /* being rewritten: the state's pid */ }
    const pid = supervised?.pid ?? n.agent?.pid ?? 0;
    // fds first: the stats request below holds a connection of its own while it is answered.
    const fds = pid > 0 ? fdCount(pid) : NaN;
    const rss = pid > 0 ? rssMiB(pid) : { rss: NaN, anon: NaN };
    let heap = NaN, conntrack = NaN;
    if (n.agent !== null) {
      try {
        const stats = await new ControlClient(n.agent.controlSocket, { timeoutMs: 10_000 }).request({ op: 'stats' });
        heap = (stats.memory?.heapUsed ?? NaN) / 1048576;
        conntrack = stats.conntrack?.entries ?? 0;
      } catch { /* a dead agent: NaN */ }
    }
    nodes.push({ node: n.name, pid, restarts: supervised?.restarts ?? 0, rssMiB: rss.rss, anonMiB: rss.anon, heapUsedMiB: heap, fds, conntrack });
  }
  const netns = labNetns(lab);
  let taps = 0, tuns = 0;
  for (const ns of netns) {
    let text = '';
    try { text = await execText(['ip', '-n', ns, '-d', '-o', 'link', 'show'], 10_000); } catch { continue; /* being deleted */ }
    taps += (text.match(/ tun type tap /g) ?? []).length;
    tuns += (text.match(/ tun type tun /g) ?? []).length;
  }
  return { time: Date.now() / 1000, nodes, netns: netns.length, taps, tuns };
}

/** Least-squares slope of y over x (per unit of x); NaN with fewer than two points. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n, my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) { num += (xs[i]! - mx) * (ys[i]! - my); den += (xs[i]! - mx) ** 2; }
  return den === 0 ? NaN : num / den;
}

/**
 * A pod for the pod churn: HTTP echo on "http" (8080), labelled into `soak`, on `node`.
 * It becomes an endpoint once the node daemon's prober finds it ready, and a terminating
 * one (still serving, chosen for no new flow) for the lab's grace period when deleted.
 */
export function churnPodManifest(name: string, node: string): string {
  return `apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: default, labels: { app: soak-churn, ${LABEL}: in } }
spec:
  nodeName: ${node}
  containers:
    - name: echo
      ports: [{ name: http, containerPort: 8080, protocol: TCP }]
`;
}

// A `tapir lab` driven by a benchmark: up and down through the CLI, commands inside its
// pods, servers in the background, CPU of its agents and node daemons. Every child
// process runs in its own process group so that a timeout or an interrupt can end it
// together with whatever it started; on SIGINT/SIGTERM every lab still up is taken
// down before the benchmark exits (a lab left behind holds namespaces and processes).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, cpuSecondsWithChildren, voluntarySleeps } from './tools.ts';
import { DEFAULT_TOPOLOGY_YAML } from '../../src/lab/default-topology.ts';
import type { LabAgentSettings } from '../../src/lab/topology.ts';

export const TAPIR = fileURLToPath(new URL('../../bin/tapir', import.meta.url));

export type Dataplane = 'tapir' | 'kernel';
export type ProxyMode = 'tapir' | 'iptables' | 'nftables';

export interface RunResult { code: number | null; stdout: string; stderr: string; ms: number; timedOut: boolean }

const running = new Set<ChildProcess>();
const liveLabs = new Set<BenchLab>();
let interrupted = false;

export class BenchInterrupted extends Error {
  readonly code = 'BENCH_INTERRUPTED';
  constructor() {
    super('interrupted');
  }
}

/** Throws once SIGINT/SIGTERM arrived, so long loops stop between steps. */
export function checkInterrupted(): void {
  if (interrupted) throw new BenchInterrupted();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try { process.kill(-child.pid, signal); } catch { /* already gone */ }
}

/** Spawns argv in its own process group; `onData` sees stdout as it arrives. */
export function start(argv: string[], onData?: (text: string) => void): { child: ChildProcess; done: Promise<RunResult> } {
  checkInterrupted();
  const t0 = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  running.add(child);
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); onData?.(d.toString()); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<RunResult>((resolve) => {
    child.on('error', (err) => { running.delete(child); resolve({ code: null, stdout, stderr: stderr + err.message, ms: performance.now() - t0, timedOut: false }); });
    child.on('close', (code) => { running.delete(child); resolve({ code, stdout, stderr, ms: performance.now() - t0, timedOut: false }); });
  });
  return { child, done };
}

/** Runs argv to completion; after `timeoutMs` its process group gets SIGTERM, then SIGKILL. */
export async function run(argv: string[], timeoutMs: number): Promise<RunResult> {
  const { child, done } = start(argv);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child, 'SIGTERM');
    setTimeout(() => killGroup(child, 'SIGKILL'), 3000).unref();
  }, timeoutMs);
  const result = await done;
  clearTimeout(timer);
  return { ...result, timedOut };
}

/** Like run(), but a non-zero exit is an error carrying the command's stderr. */
export async function runOk(argv: string[], timeoutMs: number): Promise<string> {
  const r = await run(argv, timeoutMs);
  if (r.code !== 0) throw new Error(`${argv.slice(0, 6).join(' ')}${argv.length > 6 ? ' …' : ''}: ${r.timedOut ? `timed out after ${timeoutMs} ms` : `exit ${r.code}`}: ${r.stderr.trim().slice(-2000)}`);
  return r.stdout;
}

/** A server started in a pod; `stop` waits for it to end by itself, at most graceMs, then ends its group. */
export interface Background {
  output(): string;
  /** Resolves once stdout matched `pattern` (false after timeoutMs or when the process ended). */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<boolean>;
  stop(graceMs: number): Promise<string>;
}

export function background(argv: string[]): Background {
  let out = '';
  const waiters: (() => void)[] = [];
  const { child, done } = start(argv, (text) => {
    out += text;
    for (const w of waiters.splice(0)) w();
  });
  let ended = false;
  void done.then(() => { ended = true; for (const w of waiters.splice(0)) w(); });
  return {
    output: () => out,
    async waitFor(pattern, timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      while (!pattern.test(out)) {
        if (ended || performance.now() > deadline) return false;
        await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(50)]);
      }
      return true;
    },
    async stop(graceMs) {
      const timer = setTimeout(() => killGroup(child, 'SIGTERM'), graceMs);
      await done;
      clearTimeout(timer);
      return out;
    },
  };
}

/** `ip6`: the pod's IPv6 address in a dual-stack lab ('' otherwise). */
export interface LabPod { name: string; node: string; ip: string; ip6: string; netns: string }
interface LabStatusJson {
  /** `ips`: every address of the pod (dual-stack labs), where lab status gives them. */
  pods: { name: string; namespace: string; node: string; ip: string | null; ips?: string[]; netns: string }[];
  nodes: { name: string; agent: { pid: number | null } | null; daemon: { pid: number | null } }[];
  services: { name: string; clusterIP: string; clusterIPs?: string[] }[];
}

export class BenchLab {
  readonly name: string;
  readonly dataplane: Dataplane;
  readonly proxyMode: ProxyMode;
  pods = new Map<string, LabPod>();
  agentPids: number[] = [];
  daemonPids: number[] = [];
  serviceIPs = new Map<string, string>();
  /** Service name -> its IPv6 cluster IP (dual-stack labs; Services with one). */
  serviceIPs6 = new Map<string, string>();
  #downing: Promise<void> | null = null;

  /** Extra arguments of `lab up` (a topology file, --source manifests). */
  readonly #upArgs: string[];
  /** Agent settings for every node (the topology's `agent:` section); null: the topology's own (none). */
  readonly #agent: LabAgentSettings | null = null;

  /**
   * `opts.name`: a bench's own recognisable name instead of bench-<mode>-<random>;
   * `opts.ipFamily` dual: a dual-stack lab (`lab up --ip-family dual`), pods with both families;
   * `opts.underlay` ipv6 (with dual): VXLAN over the nodes' IPv6 addresses (`--underlay ipv6`);
   * `opts.agent`: the default topology with these agent settings (busyPollMicros, tunnelOffload).
   */
  constructor(dataplane: Dataplane, proxyMode?: ProxyMode, opts: { name?: string; topology?: string; source?: 'kubernetes' | 'manifests'; ipFamily?: 'ipv4' | 'dual'; underlay?: 'ipv4' | 'ipv6'; agent?: LabAgentSettings } = {}) {
    this.dataplane = dataplane;
    this.proxyMode = proxyMode ?? (dataplane === 'tapir' ? 'tapir' : 'iptables');
    this.name = opts.name ?? `bench-${this.proxyMode === 'tapir' ? 'tapir' : this.proxyMode.slice(0, 3)}-${randomBytes(2).toString('hex')}`;
    if (opts.agent !== undefined) this.#agent = opts.agent;
    this.#upArgs = [
      ...(opts.topology === undefined ? [] : [opts.topology]),
      ...(opts.source === undefined ? [] : ['--source', opts.source]),
      ...(opts.ipFamily === undefined ? [] : ['--ip-family', opts.ipFamily]),
      ...(opts.underlay === undefined ? [] : ['--underlay', opts.underlay]),
    ];
  }

  get stateDir(): string {
    return `/run/tapir/lab/${this.name}`;
  }

  async up(timeoutMs = 180_000): Promise<void> {
    liveLabs.add(this);
    const args = ['lab', 'up', '--name', this.name, '--dataplane', this.dataplane];
    if (this.dataplane === 'kernel') args.push('--proxy-mode', this.proxyMode);
    args.push(...this.#upArgs);
    // Agent settings: the default topology with an `agent:` section, in a file `lab up` reads before it returns.
    const topology = this.#agent === null ? null : join(tmpdir(), `${this.name}-topology.yaml`);
    if (topology !== null) {
      const settings = Object.entries(this.#agent!).map(([k, v]) => `  ${k}: ${String(v)}\n`).join('');
      writeFileSync(topology, `${DEFAULT_TOPOLOGY_YAML}agent:\n${settings}`);
      args.push(topology);
    }
    try {
      await runOk([TAPIR, ...args], timeoutMs);
    } finally {
      if (topology !== null) rmSync(topology, { force: true });
    }
    await this.refresh();
  }

  /** Re-reads pods, services and process ids (after pods were applied). */
  async refresh(): Promise<void> {
    const status = JSON.parse(await runOk([TAPIR, 'lab', 'status', '--name', this.name, '--json'], 60_000)) as LabStatusJson;
    const ip6 = this.#podIps6();
    this.pods = new Map(status.pods.map((p) => {
      const v6 = p.ips?.find((a) => a.includes(':')) ?? ip6.get(`${p.namespace}/${p.name}`) ?? '';
      return [p.name, { name: p.name, node: p.node, ip: p.ip ?? '', ip6: v6, netns: p.netns }];
    }));
    this.serviceIPs = new Map(status.services.map((s) => [s.name, s.clusterIP]));
    this.serviceIPs6 = new Map(status.services.flatMap((s): [string, string][] => {
      const v6 = s.clusterIPs?.find((a) => a.includes(':'));
      return v6 === undefined ? [] : [[s.name, v6]];
    }));
    this.agentPids = status.nodes.map((n) => n.agent?.pid ?? 0).filter((p) => p > 0);
    this.daemonPids = status.nodes.map((n) => n.daemon.pid ?? 0).filter((p) => p > 0);
  }

  /** Idempotent: the benchmark's finally blocks and the signal handler may both call it. */
  down(): Promise<void> {
    if (!liveLabs.has(this)) return Promise.resolve();
    this.#downing ??= (async () => {
      // Not through start(): it refuses new children once interrupted.
      const r = spawnSync(TAPIR, ['lab', 'down', '--name', this.name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
      if (r.status !== 0) process.stderr.write(`lab down ${this.name} failed: ${r.stderr.trim()}\n`);
      liveLabs.delete(this);
    })();
    return this.#downing;
  }

  podIP(name: string): string {
    const ip = this.pods.get(name)?.ip;
    if (ip === undefined || ip === '') throw new Error(`lab ${this.name} has no pod ${name} with an address`);
    return ip;
  }

  /** The pod's IPv6 address (a dual-stack lab). */
  podIP6(name: string): string {
    const ip = this.pods.get(name)?.ip6;
    if (ip === undefined || ip === '') throw new Error(`lab ${this.name} has no pod ${name} with an IPv6 address (a dual-stack lab: --ip-family dual)`);
    return ip;
  }

  /** "namespace/name" -> IPv6 address, from the lab's record (PodState.ip6), for a lab status without `ips`. */
  #podIps6(): Map<string, string> {
    try {
      const state = JSON.parse(readFileSync(`${this.stateDir}/state.json`, 'utf8')) as { pods: { name: string; namespace: string; ip6?: string | null }[] };
      return new Map(state.pods.filter((p) => typeof p.ip6 === 'string').map((p) => [`${p.namespace}/${p.name}`, p.ip6!]));
    } catch {
      return new Map();
    }
  }

  exec(pod: string, argv: string[], timeoutMs = 60_000): Promise<string> {
    return runOk([TAPIR, 'lab', 'exec', '--name', this.name, pod, '--', ...argv], timeoutMs);
  }

  /**
   * A command in a pod, ended by `timeout` after limitSeconds even if nobody stops it.
   * --foreground keeps it in our process group (timeout otherwise makes its own), so
   * that stopping the group ends the command too, not only `tapir lab exec`.
   */
  background(pod: string, limitSeconds: number, argv: string[]): Background {
    return background([TAPIR, 'lab', 'exec', '--name', this.name, pod, '--', 'timeout', '--foreground', '-s', 'INT', String(limitSeconds), ...argv]);
  }

  apply(file: string, timeoutMs: number): Promise<RunResult> {
    return run([TAPIR, 'lab', 'apply', '--name', this.name, '-f', file], timeoutMs);
  }

  /** The manifest revision (every lab writer bumps it after a batch of writes). */
  revision(): number {
    try { return Number(readFileSync(`${this.stateDir}/manifests.rev`, 'utf8').trim()) || 0; } catch { return 0; }
  }

  /** The revision every node daemon reports having acted on (the lowest), from their status files. */
  daemonRevision(): number {
    try {
      const state = JSON.parse(readFileSync(`${this.stateDir}/state.json`, 'utf8')) as { nodes: { daemon: { status: string } }[] };
      return Math.min(...state.nodes.map((n) => {
        try { return (JSON.parse(readFileSync(n.daemon.status, 'utf8')) as { revision: number }).revision; } catch { return -1; }
      }));
    } catch {
      return -1;
    }
  }

  /** Sleeps of the agents' main threads so far (voluntarySleeps): each one a wakeup that a frame had to wait for. */
  agentSleeps(): number {
    return this.agentPids.reduce((s, p) => s + voluntarySleeps(p), 0);
  }

  /** CPU seconds used so far: the agents (tapir dataplane) and the node daemons with their finished children (iptables-restore, nft). */
  cpu(): { agents: number; daemons: number } {
    return {
      agents: this.agentPids.reduce((s, p) => s + cpuSeconds(p), 0),
      daemons: this.daemonPids.reduce((s, p) => s + cpuSecondsWithChildren(p), 0),
    };
  }
}

/**
 * SIGINT/SIGTERM: end every running child's process group (a `lab up` in progress
 * cleans up after itself), wait for them, take every lab still up down, run `cleanup`
 * (the caller's temporary files), exit 130. A second signal skips the waiting.
 */
export function downLabsOnSignal(cleanup: () => void = () => {}): void {
  const handler = async (signal: NodeJS.Signals): Promise<void> => {
    if (interrupted) {
      for (const lab of liveLabs) spawnSync(TAPIR, ['lab', 'down', '--name', lab.name], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
      cleanup();
      process.exit(130);
    }
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping, then taking down ${liveLabs.size} lab(s)\n`);
    const children = [...running];
    for (const child of children) killGroup(child, 'SIGTERM');
    await Promise.race([Promise.all(children.map((c) => new Promise((r) => { if (c.exitCode !== null || c.signalCode !== null) r(null); else c.once('close', r); }))), sleep(20_000)]);
    await Promise.all([...liveLabs].map((lab) => lab.down()));
    cleanup();
    process.exit(130);
  };
  process.on('SIGINT', (s) => void handler(s));
  process.on('SIGTERM', (s) => void handler(s));
}

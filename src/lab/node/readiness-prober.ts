// The kubelet's readiness prober for one node's pods, run by the node daemon inside
// the node namespace (as the kubelet probes from the node). A container with a
// readinessProbe gets it as written (tcpSocket, httpGet or exec; initialDelaySeconds,
// periodSeconds, timeoutSeconds, successThreshold, failureThreshold). One without is
// ready once its TCP ports accept connections (checked every second), or, with no TCP
// port, once its process runs. A pod is Ready when its workload runs and every
// container is ready; the daemon writes the verdict into the Pod's status.
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import type { Container, PodObject, Probe } from '../../k8s/objects.ts';
import { spawnIn } from '../../device/ip-command.ts';
import { isAlive } from '../network/processes.ts';
import { builtinPorts } from '../workloads.ts';
import type { PodState } from '../state.ts';

/** The implicit probe of a container without readinessProbe: quick, so pods turn ready fast. */
const IMPLICIT: Omit<Probe, 'tcpSocket' | 'httpGet' | 'exec'> = {
  initialDelaySeconds: 0, periodSeconds: 1, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 1,
};

type Check = (ip: string) => Promise<boolean>;

interface ContainerProbe {
  name: string;
  timing: Omit<Probe, 'tcpSocket' | 'httpGet' | 'exec'>;
  check: Check | null;
  ready: boolean;
  successes: number;
  failures: number;
  nextAt: number;
  running: boolean;
}

interface ProbedPod {
  /** JSON of what the probes depend on; a change rebuilds them. */
  signature: string;
  ip: string;
  startedAt: number;
  /** null: nothing runs in the pod (topology `workload: none`), like a bare pause container. */
  workloadPid: number | null;
  /** Written by the built-in workload once it listens; null for a plain command. */
  readyFile: string | null;
  containers: ContainerProbe[];
}

export function tcpCheck(port: number, timeoutMs: number): Check {
  return (ip) => new Promise((resolve) => {
    const socket = connect({ host: ip, port, timeout: timeoutMs });
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok); };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
}

/** The kubelet counts 200-399 as success (pkg/probe/http). */
export function httpCheck(port: number, path: string, timeoutMs: number): Check {
  return (ip) => new Promise((resolve) => {
    const req = request({ host: ip, port, path, timeout: timeoutMs, headers: { 'user-agent': 'kube-probe/tapir-lab' } }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
    });
    req.once('timeout', () => { req.destroy(); resolve(false); });
    req.once('error', () => resolve(false));
    req.end();
  });
}

function execCheck(netns: string, argv: string[], timeoutMs: number): Check {
  return () => new Promise((resolve) => {
    const child = spawnIn(netns, argv, { stdio: 'ignore', timeout: timeoutMs });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}

function resolvePort(container: Container, port: number | string): number | undefined {
  if (typeof port === 'number') return port;
  return container.ports.find((p) => p.name === port)?.containerPort;
}

function containerProbe(container: Container, netns: string): ContainerProbe {
  const base = { name: container.name, ready: false, successes: 0, failures: 0, nextAt: 0, running: false };
  const probe = container.readinessProbe;
  if (probe !== null) {
    const timeoutMs = probe.timeoutSeconds * 1000;
    let check: Check | null = null;
    if (probe.tcpSocket !== null) {
      const port = resolvePort(container, probe.tcpSocket.port);
      check = port === undefined ? async () => false : tcpCheck(port, timeoutMs);
    } else if (probe.httpGet !== null) {
      const port = resolvePort(container, probe.httpGet.port);
      check = port === undefined ? async () => false : httpCheck(port, probe.httpGet.path, timeoutMs);
    } else if (probe.exec !== null) {
      check = execCheck(netns, probe.exec.command, timeoutMs);
    }
    return { ...base, timing: probe, check };
  }
  const tcpPorts = container.ports.filter((p) => p.protocol === 'TCP').map((p) => tcpCheck(p.containerPort, 1000));
  const check: Check | null = tcpPorts.length === 0 ? null : async (ip) => (await Promise.all(tcpPorts.map((c) => c(ip)))).every(Boolean);
  return { ...base, timing: IMPLICIT, check };
}

function runs(pod: ProbedPod): boolean {
  return pod.workloadPid === null || (pod.workloadPid > 0 && isAlive(pod.workloadPid));
}

export class Prober {
  readonly #pods = new Map<string, ProbedPod>();

  /** The node's pods now (Pod objects joined with the lab's runtime record). */
  update(pods: { object: PodObject; state: PodState }[], now: number): void {
    const seen = new Set<string>();
    for (const { object, state } of pods) {
      const key = `${object.metadata.namespace}/${object.metadata.name}`;
      seen.add(key);
      const signature = JSON.stringify([object.status.podIP, object.spec.containers, state.workloadPid, state.netns]);
      if (this.#pods.get(key)?.signature === signature) continue;
      this.#pods.set(key, {
        signature,
        ip: object.status.podIP,
        startedAt: now,
        workloadPid: state.workload.type === 'none' ? null : state.workloadPid ?? -1,
        readyFile: builtinPorts(state.workload) === undefined ? null : state.readyFile,
        containers: object.spec.containers.map((c) => containerProbe(c, state.netns)),
      });
    }
    for (const key of [...this.#pods.keys()]) if (!seen.has(key)) this.#pods.delete(key);
  }

  /** Runs the probes that are due; resolves to each pod's readiness ("ns/name" -> ready). */
  async tick(now: number): Promise<Map<string, boolean>> {
    const due: Promise<void>[] = [];
    for (const pod of this.#pods.values()) {
      const running = runs(pod);
      for (const c of pod.containers) {
        if (c.running || now < c.nextAt || now < pod.startedAt + c.timing.initialDelaySeconds * 1000) continue;
        c.nextAt = now + c.timing.periodSeconds * 1000;
        if (!running || pod.ip === '') {
          c.ready = false;
          continue;
        }
        if (c.check === null) {
          // Nothing to probe: ready while the workload runs (the built-in one once it listens).
          c.ready = pod.readyFile === null || existsSync(pod.readyFile);
          continue;
        }
        c.running = true;
        due.push(c.check(pod.ip).then((ok) => {
          c.running = false;
          if (ok) { c.successes++; c.failures = 0; } else { c.failures++; c.successes = 0; }
          if (ok && c.successes >= c.timing.successThreshold) c.ready = true;
          if (!ok && c.failures >= c.timing.failureThreshold) c.ready = false;
        }));
      }
    }
    await Promise.all(due);
    const verdicts = new Map<string, boolean>();
    for (const [key, pod] of this.#pods) {
      verdicts.set(key, runs(pod) && pod.containers.every((c) => c.ready));
    }
    return verdicts;
  }
}

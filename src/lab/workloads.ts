// Starting each pod's workload inside its namespace: the built-in echo servers
// (src/workloads/main.ts under this very Node binary) or the topology's command.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive, logTail, spawnDetached } from './network/processes.ts';
import { interruptibleSleep } from './network/shell.ts';
import type { ServiceObject } from '../k8s/objects.ts';
import { preparePodStart } from './cluster/pod-start.ts';
import type { LabState, PodState } from './state.ts';
import type { Workload } from './topology.ts';
import { LabError } from './validate.ts';

const WORKLOAD_MAIN = fileURLToPath(new URL('../workloads/main.ts', import.meta.url));

/** Ports the built-in servers listen on, by kind; undefined for a plain command. */
export function builtinPorts(workload: Workload): { http: number[]; tcp: number[]; udp: number[] } | undefined {
  switch (workload.type) {
    case 'echo': return { http: [workload.httpPort], tcp: [workload.port], udp: [workload.port] };
    case 'http-echo': return { http: [workload.port], tcp: [], udp: [] };
    case 'tcp-echo': return { http: [], tcp: [workload.port], udp: [] };
    case 'udp-echo': return { http: [], tcp: [], udp: [workload.port] };
    case 'containers': return { http: workload.http, tcp: [], udp: workload.udp };
    default: return undefined;
  }
}

/** The (first) HTTP port of a pod's built-in workload, if it serves HTTP echo. */
export function httpPortOf(pod: PodState): number | undefined {
  return builtinPorts(pod.workload)?.http[0];
}

/**
 * The variables the lab gives a pod's processes (the workload, and `lab exec` in the
 * pod): its recorded env (POD_*, the Service variables, src/lab/cluster/pod-start.ts),
 * then a command workload's own env, which wins as a container's `env` wins over the
 * kubelet's Service variables.
 */
export function podProcessEnv(pod: PodState): Record<string, string> {
  return {
    ...(pod.env ?? { POD_NAME: pod.name, POD_NAMESPACE: pod.namespace, NODE_NAME: pod.node, POD_IP: pod.ip ?? '' }),
    ...(pod.workload.type === 'command' ? pod.workload.env : {}),
  };
}

export function startWorkload(pod: PodState): void {
  mkdirSync(dirname(pod.log), { recursive: true });
  rmSync(pod.readyFile, { force: true });
  const env = { ...process.env, ...podProcessEnv(pod) };
  const ports = builtinPorts(pod.workload);
  if (ports !== undefined) {
    const argv = [process.execPath, WORKLOAD_MAIN, '--pod', pod.name, '--namespace', pod.namespace, '--node', pod.node, '--ready', pod.readyFile];
    for (const port of ports.http) argv.push('--http', String(port));
    for (const port of ports.tcp) argv.push('--tcp', String(port));
    for (const port of ports.udp) argv.push('--udp', String(port));
    if (pod.workload.type === 'containers') {
      for (const { name, argv: commandArgv, env: commandEnv } of pod.workload.commands) argv.push('--command', JSON.stringify({ name, argv: commandArgv, env: commandEnv }));
    }
    pod.workloadPid = spawnDetached(pod.netns, argv, pod.log, env);
  } else if (pod.workload.type === 'command') {
    pod.workloadPid = spawnDetached(pod.netns, pod.workload.command, pod.log, env);
  }
}

/**
 * Waits until every built-in server wrote its ready file (it listens). A command
 * workload has no such signal; it has to stay up for `commandGraceMs` at least, long
 * enough for "command not found" or a crash at start to show.
 */
export async function waitForWorkloads(pods: PodState[], timeoutMs: number, commandGraceMs = 500): Promise<void> {
  const started = Date.now();
  const running = pods.filter((p) => p.workloadPid !== null);
  for (;;) {
    checkAlive(running);
    const grace = Date.now() - started < commandGraceMs;
    const pending = running.filter((p) => (builtinPorts(p.workload) === undefined ? grace : !existsSync(p.readyFile)));
    if (pending.length === 0) return;
    if (Date.now() - started > timeoutMs) {
      throw new LabError('WORKLOAD_TIMEOUT', `workloads not listening after ${timeoutMs} ms: ${pending.map((p) => `${p.namespace}/${p.name} (log ${p.log})`).join(', ')}`);
    }
    await interruptibleSleep(20);
  }
}

/** Throws for the first pod whose workload process has exited. */
export function checkAlive(pods: PodState[]): void {
  for (const pod of pods) {
    if (pod.workloadPid !== null && !isAlive(pod.workloadPid)) {
      throw new LabError('WORKLOAD_FAILED', `pod ${pod.namespace}/${pod.name}: workload exited (log ${pod.log}):\n${logTail(pod.log)}`);
    }
  }
}

/** Every pod's workload, each pod prepared as the kubelet does (resolv.conf, environment) first. */
export function startWorkloads(state: LabState, services: readonly ServiceObject[]): void {
  for (const pod of state.pods) {
    preparePodStart(state, pod, services);
    startWorkload(pod);
  }
}

// `lab exec TARGET -- CMD…`: a command inside a node, pod, the client or the underlay
// namespace, with the terminal's stdio and the command's exit status passed through.
import { constants } from 'node:os';
import { spawnIn } from '../../device/ip-command.ts';
import type { LabState, PodState } from '../state.ts';
import { LabError } from '../validate.ts';
import { podProcessEnv } from '../workloads.ts';

/**
 * Resolves TARGET to a namespace: "namespace/name" is a pod; a bare name is a node, the
 * client or "underlay" first, then a pod by name (ambiguous across namespaces: error).
 * A pod's command also gets the environment its workload got (`env`: POD_*, the
 * Service variables), so `lab exec POD -- env` shows what the pod's process saw.
 */
export function resolveTarget(state: LabState, target: string): { description: string; netns: string; env?: Record<string, string> } {
  const inPod = (pod: PodState): { description: string; netns: string; env: Record<string, string> } => ({ description: `pod ${pod.namespace}/${pod.name}`, netns: pod.netns, env: podProcessEnv(pod) });
  if (target.includes('/')) {
    const [namespace, name] = target.split('/', 2);
    const pod = state.pods.find((p) => p.namespace === namespace && p.name === name);
    if (pod === undefined) throw new LabError('NO_TARGET', `lab ${state.name} has no pod ${target}`);
    return inPod(pod);
  }
  const node = state.nodes.find((n) => n.name === target);
  if (node !== undefined) return { description: `node ${target}`, netns: node.netns };
  if (state.client !== null && state.client.name === target) return { description: `client ${target}`, netns: state.client.netns };
  if (target === 'underlay') return { description: 'underlay', netns: state.underlay.netns };
  const pods = state.pods.filter((p) => p.name === target);
  if (pods.length === 1) return inPod(pods[0]!);
  if (pods.length > 1) throw new LabError('AMBIGUOUS_TARGET', `"${target}" names pods in several namespaces: ${pods.map((p) => `${p.namespace}/${p.name}`).join(', ')}`);
  const known = [...state.nodes.map((n) => n.name), ...(state.client === null ? [] : [state.client.name]), 'underlay', ...state.pods.map((p) => `${p.namespace}/${p.name}`)];
  throw new LabError('NO_TARGET', `lab ${state.name} has no node, pod or client "${target}" (known: ${known.join(', ')})`);
}

/** Runs the command (with `env` over this process's environment); resolves to its exit code (128 + signal number when killed). */
export function execIn(netns: string, argv: string[], env?: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawnIn(netns, argv, { stdio: 'inherit', ...(env === undefined ? {} : { env: { ...process.env, ...env } }) });
    // The terminal's Ctrl-C reaches the child directly (same process group); don't die first.
    const ignore = (): void => {};
    process.on('SIGINT', ignore);
    child.on('error', (err) => reject(new LabError('EXEC_FAILED', `cannot run ip netns exec: ${err.message}`)));
    child.on('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      if (signal !== null) resolve(128 + (constants.signals[signal] ?? 0));
      else resolve(code ?? 1);
    });
  });
}

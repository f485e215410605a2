// `lab up` returns only when traffic flows: every pod is reached from a pod on another
// node (HTTP echo when it serves it, checking the reply names the pod and shows the
// caller's own address, i.e. no NAT; ping otherwise), the client reaches each node, and
// a pod on each node resolves the kube-dns Service's name through the cluster DNS
// address (its node's agent, or under the kernel data plane `tapir dns` behind the
// kernel proxy's DNAT). An IPv6-only lab's pods are checked over IPv6 only, their DNS
// with AAAA from the IPv6 cluster DNS address, and the client reaches each node's IPv6
// address too.
import { httpPortOf } from '../workloads.ts';
import { tryRunIn } from '../../device/ip-command.ts';
import { interruptibleSleep } from './shell.ts';
import { isIpv6Only, podPrimaryIP, type LabState, type PodState } from '../state.ts';
import { LabError } from '../validate.ts';
import { labClusterDns } from '../cluster/pod-start.ts';
import { STAND_IN_AGENT } from './executables.ts';
import { DEFAULT_CLUSTER_DOMAIN } from '../../model/cluster-defaults.ts';

interface Check { description: string; attempt(): Promise<string | null> }

export async function checkTraffic(state: LabState, timeoutMs: number): Promise<number> {
  const checks: Check[] = state.pods.filter((p) => p.ip !== null).map((pod) => podCheck(state, pod));
  // Dual-stack: the same pod checks over IPv6, and each node reaches a pod of its own over IPv6 (the host TUN).
  for (const pod of state.pods.filter((p) => p.ip6 != null)) checks.push(podCheck(state, pod, 6));
  for (const node of state.nodes.filter((n) => n.podCIDRv6 !== undefined)) {
    const pod = state.pods.find((p) => p.node === node.name && p.ip6 != null);
    if (pod !== undefined) checks.push({ description: `node ${node.name} -> pod ${pod.namespace}/${pod.name} (${pod.ip6}) ping`, attempt: () => ping(node.netns, pod.ip6!) });
  }
  if (state.client !== null) {
    const client = state.client;
    for (const node of state.nodes) {
      checks.push({ description: `client ${client.name} -> node ${node.name} (${node.underlayIP})`, attempt: () => ping(client.netns, node.underlayIP) });
      // An IPv6-only lab's node ports and load balancers are on the nodes' IPv6 addresses.
      if (isIpv6Only(state) && client.ip6 !== undefined && node.underlayIP6 !== undefined) {
        const ip6 = node.underlayIP6;
        checks.push({ description: `client ${client.name} -> node ${node.name} (${ip6})`, attempt: () => ping(client.netns, ip6) });
      }
    }
  }
  // (A stand-in agent of the tests answers no DNS.)
  for (const node of state.dataplane === 'tapir' && STAND_IN_AGENT ? [] : state.nodes) {
    const pod = state.pods.find((p) => p.node === node.name && podPrimaryIP(p) !== null);
    if (pod !== undefined) checks.push(dnsCheck(state, pod));
  }
  const deadline = Date.now() + timeoutMs;
  const failures = (await Promise.all(checks.map(async (check) => {
    for (;;) {
      const problem = await check.attempt();
      if (problem === null) return null;
      if (Date.now() > deadline) return `${check.description}: ${problem}`;
      await interruptibleSleep(100);
    }
  }))).filter((f): f is string => f !== null);
  if (failures.length > 0) throw new LabError('NO_TRAFFIC', `traffic does not flow after ${timeoutMs} ms:\n  ${failures.join('\n  ')}`);
  return checks.length;
}

/** Who checks a pod: a pod on the next node that has one (of the family), else a pod beside it, else its node. */
function checkerOf(state: LabState, pod: PodState, family: 4 | 6): { name: string; netns: string; ip: string | null } {
  const order = state.nodes.map((n) => n.name);
  const start = order.indexOf(pod.node);
  const addressOf = (p: PodState): string | null => (family === 4 ? p.ip : p.ip6 ?? null);
  for (let step = 1; step <= order.length; step++) {
    const nodeName = order[(start + step) % order.length];
    const other = state.pods.find((p) => p.node === nodeName && p !== pod && addressOf(p) !== null);
    if (other !== undefined) return { name: `pod ${other.namespace}/${other.name}`, netns: other.netns, ip: addressOf(other) };
  }
  const node = state.nodes.find((n) => n.name === pod.node)!;
  return { name: `node ${node.name}`, netns: node.netns, ip: null };
}

function podCheck(state: LabState, pod: PodState, family: 4 | 6 = 4): Check {
  const checker = checkerOf(state, pod, family);
  const port = httpPortOf(pod);
  const address = family === 4 ? pod.ip! : pod.ip6!;
  const target = `pod ${pod.namespace}/${pod.name} (${address})`;
  if (port === undefined) return { description: `${checker.name} -> ${target} ping`, attempt: () => ping(checker.netns, address) };
  const url = family === 4 ? `http://${address}:${port}/lab-up-check` : `http://[${address}]:${port}/lab-up-check`;
  return {
    description: `${checker.name} -> ${target} HTTP :${port}`,
    attempt: async () => {
      const result = await tryRunIn(checker.netns, 'curl', ['-sS', '-g', '--max-time', '2', url], { timeoutMs: 5000 });
      if (result.code !== 0) return result.stderr.trim() || `curl exit ${result.code}`;
      let reply: { pod?: string; client?: string };
      try {
        reply = JSON.parse(result.stdout) as typeof reply;
      } catch {
        return `not an echo reply: ${result.stdout.slice(0, 200)}`;
      }
      if (reply.pod !== pod.name) return `answered by "${reply.pod}"`;
      if (checker.ip !== null && !reply.client?.startsWith(`${checker.ip}:`)) return `pod saw client ${reply.client}, expected ${checker.ip} (NAT on a pod-to-pod path)`;
      return null;
    },
  };
}

async function ping(netns: string, ip: string): Promise<string | null> {
  const result = await tryRunIn(netns, 'ping', ['-c', '1', '-W', '1', '-q', ip], { timeoutMs: 5000 });
  return result.code === 0 ? null : `ping: ${result.stderr.trim() || 'no reply'}`;
}

/**
 * The kube-dns Service's own name, asked of the cluster DNS address from a pod: the
 * answer is that address (an AAAA record in an IPv6-only lab).
 */
function dnsCheck(state: LabState, pod: PodState): Check {
  const server = labClusterDns(state);
  const name = `kube-dns.kube-system.svc.${DEFAULT_CLUSTER_DOMAIN}`;
  const type = isIpv6Only(state) ? 'AAAA' : 'A';
  return {
    description: `pod ${pod.namespace}/${pod.name} -> cluster DNS ${server}: ${name} ${type}`,
    attempt: async () => {
      const result = await tryRunIn(pod.netns, 'dig', ['+short', '+time=1', '+tries=1', `@${server}`, name, type], { timeoutMs: 5000 });
      if (result.code !== 0) return result.stdout.trim() || result.stderr.trim() || `dig exit ${result.code}`;
      return result.stdout.trim() === server ? null : `answered ${JSON.stringify(result.stdout.trim())}, expected ${server}`;
    },
  };
}

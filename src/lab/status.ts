// `lab status`: the lab as state.json records it, plus whether its processes still run.
import { isAlive } from './processes.ts';
import type { LabState } from './state.ts';

export interface LabStatus {
  name: string;
  dataplane: string;
  phase: string;
  createdAt: string;
  source: string;
  stateDir: string;
  addressing: LabState['addressing'];
  underlay: { netns: string; bridge: string; cidr: string };
  nodes: { name: string; netns: string; underlayIP: string; podCIDR: string; gateway: string; agent: { pid: number | null; running: boolean; answers: boolean; controlSocket: string; log: string } | null }[];
  pods: { name: string; namespace: string; node: string; netns: string; ip: string | null; mac: string | null; labels: Record<string, string>; ports: LabState['pods'][number]['ports']; workload: string; pid: number | null; running: boolean; log: string }[];
  client: { name: string; netns: string; ip: string } | null;
}

export async function labStatus(state: LabState): Promise<LabStatus> {
  // The agent client is loaded only for a Tapir lab (the kernel lab needs none of it).
  const agentStatus = state.dataplane === 'tapir' ? (await import('./tapir-dataplane.ts')).agentStatus : undefined;
  const nodes = await Promise.all(state.nodes.map(async (n) => ({
    name: n.name,
    netns: n.netns,
    underlayIP: n.underlayIP,
    podCIDR: n.podCIDR,
    gateway: n.gateway,
    agent: n.agent === null ? null : {
      pid: n.agent.pid,
      running: n.agent.pid !== null && isAlive(n.agent.pid),
      answers: agentStatus === undefined ? false : (await agentStatus(n)).answers,
      controlSocket: n.agent.controlSocket,
      log: n.agent.log,
    },
  })));
  return {
    name: state.name,
    dataplane: state.dataplane,
    phase: state.phase,
    createdAt: state.createdAt,
    source: state.source,
    stateDir: state.stateDir,
    addressing: state.addressing,
    underlay: { netns: state.underlay.netns, bridge: state.underlay.bridge, cidr: state.addressing.underlayCIDR },
    nodes,
    pods: state.pods.map((p) => ({
      name: p.name,
      namespace: p.namespace,
      node: p.node,
      netns: p.netns,
      ip: p.ip,
      mac: p.mac,
      labels: p.labels,
      ports: p.ports,
      workload: p.workload.type,
      pid: p.workloadPid,
      running: p.workloadPid !== null && isAlive(p.workloadPid),
      log: p.log,
    })),
    client: state.client === null ? null : { name: state.client.name, netns: state.client.netns, ip: state.client.ip },
  };
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

export function formatStatus(status: LabStatus): string {
  const a = status.addressing;
  const lines = [
    `lab ${status.name}: dataplane ${status.dataplane}, ${status.phase}; underlay ${a.underlayCIDR} (MTU ${a.mtu}), cluster ${a.clusterCIDR}, services ${a.serviceCIDR}, VNI ${a.vni}, pod MTU ${a.podMTU}`,
    '',
    table(['NODE', 'UNDERLAY IP', 'POD CIDR', 'GATEWAY', ...(status.dataplane === 'tapir' ? ['AGENT'] : []), 'NETNS'],
      status.nodes.map((n) => [n.name, n.underlayIP, n.podCIDR, n.gateway,
        ...(n.agent === null ? [] : [n.agent.answers ? `pid ${n.agent.pid}` : n.agent.running ? 'not answering' : 'stopped']), n.netns])),
    '',
    table(['POD', 'NODE', 'IP', 'WORKLOAD', 'LABELS', 'NETNS'],
      status.pods.map((p) => [`${p.namespace}/${p.name}`, p.node, p.ip ?? '-', `${p.workload}${p.pid === null ? '' : p.running ? '' : ' (exited)'}`,
        Object.entries(p.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-', p.netns])),
  ];
  if (status.client !== null) lines.push('', table(['CLIENT', 'UNDERLAY IP', 'NETNS'], [[status.client.name, status.client.ip, status.client.netns]]));
  return lines.join('\n');
}

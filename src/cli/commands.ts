// The subcommand table. Each entry's module exports `run(args): Promise<number>`.
export interface CommandModule {
  run(args: string[]): Promise<number>;
}

export interface Command {
  name: string;
  summary: string;
  load(): Promise<CommandModule>;
}

export const commands: Command[] = [
  { name: 'lab', summary: 'multi-node lab in network namespaces: up | status | exec | apply | delete | down | list', load: () => import('./lab.ts') },
  { name: 'agent', summary: 'run the node agent: tapir agent --config FILE', load: () => import('./agent.ts') },
  { name: 'dns', summary: 'cluster DNS from a CoreDNS Corefile: tapir dns --corefile FILE [--manifests DIR | --kubeconfig FILE]', load: () => import('./dns.ts') },
  { name: 'ingress', summary: 'run the Ingress controller and its proxy: tapir ingress [--kubeconfig F | --manifests DIR]; tapir ingress status', load: () => import('./ingress.ts') },
  { name: 'stats', summary: 'a running agent\'s per-port counters and drops by reason', load: () => import('./stats.ts') },
  { name: 'capture', summary: 'write a pcap of a running agent\'s port: tapir capture PORT -w FILE', load: () => import('./capture.ts') },
  { name: 'trace', summary: 'explain a packet\'s fate through the service tables (service, endpoint, NAT)', load: () => import('./trace.ts') },
  { name: 'pcap', summary: 'read pcap files: tapir pcap dump FILE [--json]', load: () => import('./pcap.ts') },
  { name: 'bench', summary: 'the benchmark report: tapir bench [--quick] [--out DIR] [--only a,b] (from a checkout)', load: () => import('./bench.ts') },
  { name: 'demo', summary: 'a short packet demo: a userspace ARP/ICMP responder on a TAP in a namespace', load: () => import('./demo.ts') },
];

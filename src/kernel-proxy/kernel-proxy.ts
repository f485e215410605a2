// kube-proxy's iptables and nftables modes (the lab's node daemon runs one per node):
// installs the rules generated from this node's compiled ServiceSnapshot into the
// network namespace it runs in (iptables-restore without --noflush replaces the filter and nat tables whole; the
// nftables transaction rebuilds `table ip kube-proxy` atomically). Only when the text
// changed: the rules are a pure function of the snapshot. After a sync, UDP conntrack
// entries towards endpoints that went away are deleted, as kube-proxy does
// (pkg/proxy/conntrack/cleanup.go): UDP has no connection end, so without this a client
// keeps sending into a removed pod until the entry times out.
import { iptablesRules } from './iptables/rules.ts';
import { nftablesRules } from './nftables/rules.ts';
import type { ProxyNode } from './proxy-plan.ts';
import { tryRun } from '../device/ip-command.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import { ipv4ToString } from '../wire/address.ts';

export type KernelProxyMode = 'iptables' | 'nftables';

export class KernelProxy {
  readonly mode: KernelProxyMode;
  readonly #node: ProxyNode;
  #installed = '';
  /** UDP frontend -> endpoint pairs of the installed rules: "10.96.0.5:53>10.244.1.2" (node port: ":30053>…"). */
  #udpFlows = new Set<string>();
  #generation = 0;
  #syncs = 0;

  constructor(mode: KernelProxyMode, node: ProxyNode) {
    this.mode = mode;
    this.#node = node;
  }

  get status(): { mode: KernelProxyMode; generation: number; syncs: number; ruleLines: number } {
    return { mode: this.mode, generation: this.#generation, syncs: this.#syncs, ruleLines: this.#installed === '' ? 0 : this.#installed.split('\n').length - 1 };
  }

  /** Installs the rules for `snapshot` if they differ from what is installed; throws on failure. */
  async sync(snapshot: ServiceSnapshot): Promise<boolean> {
    const text = this.mode === 'iptables' ? iptablesRules(snapshot, this.#node) : nftablesRules(snapshot, this.#node);
    if (text === this.#installed) return false;
    const [cmd, args] = this.mode === 'iptables' ? ['iptables-restore', ['-w', '5']] : ['nft', ['-f', '-']];
    const result = await tryRun(cmd, args, { input: text, timeoutMs: 30_000 });
    if (result.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
    this.#installed = text;
    this.#generation = snapshot.generation;
    this.#syncs++;
    const flows = udpFlows(snapshot);
    const stale = [...this.#udpFlows].filter((f) => !flows.has(f));
    this.#udpFlows = flows;
    await Promise.all(stale.map(deleteFlows));
    return true;
  }
}

function udpFlows(snapshot: ServiceSnapshot): Set<string> {
  const flows = new Set<string>();
  for (const port of snapshot.ports) {
    if (port.protocol !== 17 || port.clusterIP === 0) continue;
    const frontends = [port.clusterIP, ...port.externalIPs, ...port.loadBalancerIPs].map((ip) => `${ipv4ToString(ip)}:${port.port}`);
    if (port.nodePort !== 0) frontends.push(`:${port.nodePort}`);
    for (const e of [...port.clusterEndpoints, ...port.externalEndpoints]) {
      for (const frontend of frontends) flows.add(`${frontend}>${ipv4ToString(e.ip)}`);
    }
  }
  return flows;
}

/** conntrack exits 1 when nothing matched, which is fine; a missing tool only loses the cleanup. */
async function deleteFlows(flow: string): Promise<void> {
  const [frontend, endpoint] = flow.split('>') as [string, string];
  const [ip, port] = frontend.split(':') as [string, string];
  const args = ['-D', '-p', 'udp', ...(ip === '' ? [] : ['--orig-dst', ip]), '--orig-port-dst', port, '--reply-src', endpoint];
  await tryRun('conntrack', args, { timeoutMs: 5000 });
}

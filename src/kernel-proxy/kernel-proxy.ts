// kube-proxy's iptables and nftables modes (the lab's node daemon runs one per node and
// family, as kube-proxy runs one proxier per family on a dual-stack node): installs the
// rules generated from this node's compiled snapshot into the network namespace it runs
// in (iptables-restore / ip6tables-restore without --noflush replaces the family's
// filter and nat tables whole; the nftables transaction rebuilds `table ip kube-proxy`
// or `table ip6 kube-proxy` atomically). Only when the text
// changed: the rules are a pure function of the snapshot. After a sync, UDP conntrack
// entries towards endpoints that went away are deleted, as kube-proxy does
// (pkg/proxy/conntrack/cleanup.go): UDP has no connection end, so without this a client
// keeps sending into a removed pod until the entry times out.
import { iptablesRules } from './iptables/rules.ts';
import { nftablesRules } from './nftables/rules.ts';
import { proxySnapshot4, type ProxyFamily, type ProxyNode, type ProxySnapshot } from './proxy-plan.ts';
import { tryRun } from '../device/ip-command.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';

export type KernelProxyMode = 'iptables' | 'nftables';

export class KernelProxy {
  readonly mode: KernelProxyMode;
  readonly family: ProxyFamily;
  readonly #node: ProxyNode;
  #installed = '';
  /** UDP frontend -> endpoint triples of the installed rules: "10.96.0.5 53 10.244.1.2" (node port: "- 30053 …"). */
  #udpFlows = new Set<string>();
  #generation = 0;
  #syncs = 0;

  /** `node`: the family's cluster and service CIDRs. */
  constructor(mode: KernelProxyMode, node: ProxyNode, family: ProxyFamily = 4) {
    this.mode = mode;
    this.family = family;
    this.#node = node;
  }

  get status(): { mode: KernelProxyMode; generation: number; syncs: number; ruleLines: number } {
    return { mode: this.mode, generation: this.#generation, syncs: this.#syncs, ruleLines: this.#installed === '' ? 0 : this.#installed.split('\n').length - 1 };
  }

  /** Installs the rules for `snapshot` (of this proxy's family) if they differ from what is installed; throws on failure. */
  async sync(snapshot: ServiceSnapshot | ProxySnapshot): Promise<boolean> {
    const proxied = 'family' in snapshot ? snapshot : proxySnapshot4(snapshot);
    if (proxied.family !== this.family) throw new Error(`an IPv${proxied.family} snapshot handed to the IPv${this.family} ${this.mode} proxy`);
    const text = this.mode === 'iptables' ? iptablesRules(proxied, this.#node) : nftablesRules(proxied, this.#node);
    if (text === this.#installed) return false;
    const [cmd, args] = this.mode === 'iptables' ? [this.family === 4 ? 'iptables-restore' : 'ip6tables-restore', ['-w', '5']] : ['nft', ['-f', '-']];
    const result = await tryRun(cmd, args, { input: text, timeoutMs: 30_000 });
    if (result.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
    this.#installed = text;
    this.#generation = snapshot.generation;
    this.#syncs++;
    const flows = udpFlows(proxied);
    const stale = [...this.#udpFlows].filter((f) => !flows.has(f));
    this.#udpFlows = flows;
    await Promise.all(stale.map((flow) => deleteFlows(this.family, flow)));
    return true;
  }
}

function udpFlows(snapshot: ProxySnapshot): Set<string> {
  const flows = new Set<string>();
  for (const port of snapshot.ports) {
    if (port.protocol !== 17 || port.clusterIP === '') continue;
    const frontends = [port.clusterIP, ...port.externalIPs, ...port.loadBalancerIPs].map((ip) => `${ip} ${port.port}`);
    if (port.nodePort !== 0) frontends.push(`- ${port.nodePort}`);
    for (const e of [...port.clusterEndpoints, ...port.externalEndpoints]) {
      for (const frontend of frontends) flows.add(`${frontend} ${e.ip}`);
    }
  }
  return flows;
}

/** conntrack exits 1 when nothing matched, which is fine; a missing tool only loses the cleanup. */
async function deleteFlows(family: ProxyFamily, flow: string): Promise<void> {
  const [ip, port, endpoint] = flow.split(' ') as [string, string, string];
  const args = ['-D', '-f', family === 4 ? 'ipv4' : 'ipv6', '-p', 'udp', ...(ip === '-' ? [] : ['--orig-dst', ip]), '--orig-port-dst', port, '--reply-src', endpoint];
  await tryRun('conntrack', args, { timeoutMs: 5000 });
}

// The lab's kube-proxy for the kernel proxy modes: installs the rules generated from
// this node's compiled ServiceSnapshot into the node namespace the daemon runs in
// (iptables-restore without --noflush replaces the filter and nat tables whole; the
// nftables transaction rebuilds `table ip kube-proxy` atomically). Only when the text
// changed: the rules are a pure function of the snapshot.
import { iptablesRules } from './iptables-rules.ts';
import { nftablesRules } from './nftables-rules.ts';
import type { ProxyNode } from './proxy-plan.ts';
import { tryRun } from './shell.ts';
import type { ServiceSnapshot } from '../services/spec.ts';

export type KernelProxyMode = 'iptables' | 'nftables';

export class KernelProxy {
  readonly mode: KernelProxyMode;
  readonly #node: ProxyNode;
  #installed = '';
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
    return true;
  }
}

// The one kernel hook Tapir installs: traffic for node ports, load-balancer IPs and
// external IPs arriving on the node's underlay interface is redirected into the agent's
// host TUN before the node's own stack sees it. clsact + u32 + mirred, on the
// underlay interface's ingress, in the agent's own network namespace:
//
//   tc filter ... ingress prio 5   u32 match ip src 127.0.0.0/8  classid :1                   (a loopback source from the wire
//                                  stays with the stack, which drops it as a martian: the agent takes 127.0.0.0/8 for the
//                                  node's own processes, local-steering.ts)
//   tc filter ... ingress prio 10  u32 match ip dst NODE/32 match ip dport HC  classid :1   (health checks stay local:
//                                  a match with no action ends classification; this kernel has no act_gact for "pass")
//   tc filter ... ingress prio 20  u32 match ip dst NODE/32 match ip protocol 6|17 match ip dport BLOCK/MASK  action mirred egress redirect dev TUN
//   tc filter ... ingress prio 30  u32 match ip dst VIP/32  action mirred egress redirect dev TUN
//
// IPv6 (a node with an IPv6 underlay address): the same rules with `protocol ipv6` and
// u32's ip6 selectors at priorities one above IPv4's (6: ::1 from the wire, 11 health
// checks, 21 node ports, 31 load-balancer and external IPs). `ip6 dport` assumes the
// TCP/UDP header right after the 40-byte IPv6 header: a packet with extension headers
// to a node port is not steered (and meets the node's stack).
//
// mirred hands a TUN the bare IP packet (unlike nftables' netdev `fwd`, which keeps
// the Ethernet header). The kernel only steers: every NAT, load-balancing and
// conntrack decision is the agent's. u32's `ip dport` assumes a 20-byte IPv4 header;
// packets with IP options to a node port are not steered (and meet the node's stack).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { TapirError } from '../errors/tapir-error.ts';
import type { PortRange } from '../model/cluster-defaults.ts';
import { ipv4ToString, ipv6ToString } from '../wire/index.ts';

const run = promisify(execFile);

export interface SteeringRules {
  nodeIP: number;
  /** The node ports to steer (default 30000-32767). */
  nodePortRange: PortRange;
  /** healthCheckNodePorts: served by the agent's own listener in the node's stack. */
  healthCheckPorts: number[];
  /** Load-balancer and external IPs that this node should take in. */
  serviceIPs: number[];
  /** The node's IPv6 node-port addresses; absent = none. */
  nodeIPs6?: Uint8Array[];
  /** IPv6 load-balancer and external IPs (RFC 5952 text). */
  serviceIPs6?: string[];
}

/** Splits [lo, hi] into aligned (value, mask) blocks that u32 can match. */
export function portBlocks(lo: number, hi: number): { value: number; mask: number }[] {
  const blocks: { value: number; mask: number }[] = [];
  let p = lo;
  while (p <= hi) {
    let size = 1;
    while ((p & (size * 2 - 1)) === 0 && p + size * 2 - 1 <= hi && size < 0x10000) size *= 2;
    blocks.push({ value: p, mask: 0xffff & ~(size - 1) });
    p += size;
  }
  return blocks;
}

/** The second band of priorities: a new rule set goes in beside the old one before the old one goes. */
const BAND = 100;

/** The `tc -batch` lines for a complete rule set (tested as a golden), at priorities 5-30 plus `band` (0 or BAND). */
export function steeringBatch(dev: string, tun: string, r: SteeringRules, band = 0): string[] {
  const node = `${ipv4ToString(r.nodeIP)}/32`;
  const lines: string[] = [`filter add dev ${dev} ingress prio ${band + 5} protocol ip u32 match ip src 127.0.0.0/8 classid :1`];
  for (const port of r.healthCheckPorts) {
    lines.push(`filter add dev ${dev} ingress prio ${band + 10} protocol ip u32 match ip dst ${node} match ip protocol 6 0xff match ip dport ${port} 0xffff classid :1`);
  }
  for (const proto of [6, 17]) {
    for (const b of portBlocks(r.nodePortRange.min, r.nodePortRange.max)) {
      lines.push(`filter add dev ${dev} ingress prio ${band + 20} protocol ip u32 match ip dst ${node} match ip protocol ${proto} 0xff match ip dport ${b.value} 0x${b.mask.toString(16)} action mirred egress redirect dev ${tun}`);
    }
  }
  for (const ip of [...new Set(r.serviceIPs)].sort((a, b) => a - b)) {
    lines.push(`filter add dev ${dev} ingress prio ${band + 30} protocol ip u32 match ip dst ${ipv4ToString(ip)}/32 action mirred egress redirect dev ${tun}`);
  }
  const nodes6 = (r.nodeIPs6 ?? []).map((a) => `${ipv6ToString(a)}/128`);
  const vips6 = [...new Set(r.serviceIPs6 ?? [])].sort();
  if (nodes6.length === 0 && vips6.length === 0) return lines;
  lines.push(`filter add dev ${dev} ingress prio ${band + 6} protocol ipv6 u32 match ip6 src ::1/128 classid :1`);
  for (const node6 of nodes6) {
    for (const port of r.healthCheckPorts) {
      lines.push(`filter add dev ${dev} ingress prio ${band + 11} protocol ipv6 u32 match ip6 dst ${node6} match ip6 protocol 6 0xff match ip6 dport ${port} 0xffff classid :1`);
    }
    for (const proto of [6, 17]) {
      for (const b of portBlocks(r.nodePortRange.min, r.nodePortRange.max)) {
        lines.push(`filter add dev ${dev} ingress prio ${band + 21} protocol ipv6 u32 match ip6 dst ${node6} match ip6 protocol ${proto} 0xff match ip6 dport ${b.value} 0x${b.mask.toString(16)} action mirred egress redirect dev ${tun}`);
      }
    }
  }
  for (const ip of vips6) {
    lines.push(`filter add dev ${dev} ingress prio ${band + 31} protocol ipv6 u32 match ip6 dst ${ip}/128 action mirred egress redirect dev ${tun}`);
  }
  return lines;
}

export class Steering {
  readonly #dev: string;
  readonly #tun: string;
  #installed = '';

  constructor(underlayInterface: string, tun: string) {
    this.#dev = underlayInterface;
    this.#tun = tun;
  }

  /** Adds the clsact qdisc and lets replies from the TUN carry the node's own addresses. */
  async init(): Promise<void> {
    await tc(['qdisc', 'replace', 'dev', this.#dev, 'clsact']);
    // Replies to steered traffic leave through the TUN with the node (or a VIP) as
    // source: the stack must accept a local source there and not reverse-path filter it.
    await setSysctls([`net.ipv4.conf.${this.#tun}.accept_local=1`, `net.ipv4.conf.${this.#tun}.rp_filter=0`]);
  }

  /**
   * Replaces the filters when the rule set changed: make before break. The new set goes
   * in at the priority band the old one does not use, then the old band's priorities are
   * deleted, so steered traffic never meets a moment without rules (it would reach the
   * node's stack, which resets it). The first apply of a restarted agent finds its
   * predecessor's filters this way and replaces them without a gap either.
   */
  async apply(rules: SteeringRules): Promise<void> {
    const key = steeringBatch(this.#dev, this.#tun, rules).join('\n');
    if (key === this.#installed) return;
    const old = await this.#installedPrefs();
    const band = old.some((p) => p < BAND) ? BAND : 0;
    await tc(['-batch', '-'], `${steeringBatch(this.#dev, this.#tun, rules, band).join('\n')}\n`);
    for (const pref of old) {
      try {
        await tc(['filter', 'del', 'dev', this.#dev, 'ingress', 'pref', String(pref)]);
      } catch { /* gone already */ }
    }
    this.#installed = key;
  }

  /** The priorities of the ingress filters on the underlay now (ours: the only ones there). */
  async #installedPrefs(): Promise<number[]> {
    let out = '';
    try {
      out = await tc(['-j', 'filter', 'show', 'dev', this.#dev, 'ingress']);
    } catch {
      return [];
    }
    const filters = JSON.parse(out || '[]') as { pref?: number }[];
    return [...new Set(filters.map((f) => f.pref).filter((p): p is number => typeof p === 'number'))];
  }

  async close(): Promise<void> {
    try {
      await tc(['qdisc', 'del', 'dev', this.#dev, 'clsact']);
    } catch { /* the namespace or the device may be gone already */ }
  }
}

/** A `tc` or `sysctl` call of the steering hook failed (the message has the command and its stderr). */
export class SteeringError extends TapirError {
  readonly code = 'TAPIR_STEERING';
}

/** `sysctl -w` in the agent's own namespace: per-interface settings of the host TUN only, never `all` or another namespace's. */
export async function setSysctls(settings: string[]): Promise<void> {
  await run('sysctl', ['-qw', ...settings]).catch((err: Error & { stderr?: string }) => {
    throw new SteeringError(`sysctl -w ${settings.join(' ')}: ${(err.stderr || err.message).trim()}`, { cause: err });
  });
}

/** Runs tc(8) (`input` on its stdin) and returns what it printed. */
async function tc(args: string[], input?: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const child = execFile('tc', args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new SteeringError(`tc ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

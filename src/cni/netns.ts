// What the plugin itself looks at inside the pod's namespace: the interface and its
// addresses (CHECK), and routes an IPAM plugin asked for beyond the default one (ADD).
// `nsenter --net=PATH ip ...` with argument arrays: no shell ever sees a path or name.
import { existsSync } from 'node:fs';
import { tryIp } from '../device/ip-command.ts';
import { CniCode, CniError } from './errors.ts';

export interface LinkState {
  mac: string;
  mtu: number;
  up: boolean;
  addresses: { address: string; prefixLength: number }[];
}

/** The interface in the namespace, or null when there is no such interface. */
export async function inspectLink(netns: string, ifName: string): Promise<LinkState | null> {
  if (!existsSync(netns)) throw new CniError(CniCode.checkFailed, `network namespace ${netns} does not exist`, `CNI_NETNS=${netns}`);
  const r = await tryIp(['-j', 'addr', 'show', 'dev', ifName], { netns, timeoutMs: 10_000 });
  if (r.code !== 0) {
    if (/does not exist|Cannot find device/i.test(r.stderr)) return null;
    throw new CniError(CniCode.io, `cannot inspect ${ifName} in ${netns}`, r.stderr.trim());
  }
  const links = JSON.parse(r.stdout) as { address?: string; mtu?: number; flags?: string[]; addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[] }[];
  const link = links[0];
  if (link === undefined) return null;
  return {
    mac: link.address ?? '',
    mtu: link.mtu ?? 0,
    up: (link.flags ?? []).includes('UP'),
    // IPv4 and global IPv6 addresses (the link-local the kernel derives is not the ADD's).
    addresses: (link.addr_info ?? []).filter((a) => a.family === 'inet' || (a.family === 'inet6' && a.scope !== 'link'))
      .map((a) => ({ address: a.local, prefixLength: a.prefixlen })),
  };
}

/** Installs (or replaces) one route through the pod's interface. */
export async function replaceRoute(netns: string, ifName: string, dst: string, gw: string | undefined): Promise<void> {
  const args = ['route', 'replace', dst, ...(gw !== undefined ? ['via', gw] : []), 'dev', ifName];
  const r = await tryIp(args, { netns, timeoutMs: 10_000 });
  if (r.code !== 0) throw new CniError(CniCode.io, `cannot add route ${dst} in ${netns}`, `ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

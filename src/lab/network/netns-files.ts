// Per-namespace files under /etc/netns/<netns>/: `ip netns exec` bind-mounts each of
// them over /etc/<file> in the mount namespace it makes for the command (iproute2's
// netns_exec, bind_etc), so a process started in a lab namespace that way reads its
// namespace's resolv.conf as /etc/resolv.conf. The lab starts workloads, agents and
// `lab exec` commands through `ip netns exec` (src/device/ip-command.ts spawnIn) and
// writes a resolv.conf here for every node (the site's resolver: the lab's NSD) and
// every pod (the kubelet's composition, src/lab/cluster/pod-dns.ts), and each pod's
// kubelet-managed hosts file. A directory goes
// with its namespace; `lab down` also removes any a crash left, by the lab's name pattern.
import { mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labNetnsPattern } from './names.ts';

export const NETNS_ETC_DIR = '/etc/netns';

export function netnsEtcDir(netns: string): string {
  return join(NETNS_ETC_DIR, netns);
}

export function netnsResolvConfPath(netns: string): string {
  return join(netnsEtcDir(netns), 'resolv.conf');
}

/** Writes /etc/netns/<netns>/resolv.conf (atomically: a reader never sees half a file). */
export function writeNetnsResolvConf(netns: string, text: string): string {
  return writeNetnsFile(netns, 'resolv.conf', text);
}

/** Writes /etc/netns/<netns>/<name>, which `ip netns exec` mounts over /etc/<name>. */
export function writeNetnsFile(netns: string, name: string, text: string): string {
  const path = join(netnsEtcDir(netns), name);
  for (let attempt = 0; ; attempt++) {
    try {
      mkdirSync(netnsEtcDir(netns), { recursive: true });
      writeFileSync(`${path}.tmp`, text);
      renameSync(`${path}.tmp`, path);
      return path;
    } catch (err) {
      // Another lab's `down` may have removed an empty /etc/netns between the two steps.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 0) throw err;
    }
  }
}

/** Removes /etc/netns/<netns> and what is in it; nothing when there is none. */
export function removeNetnsEtc(netns: string): void {
  rmSync(netnsEtcDir(netns), { recursive: true, force: true });
}

/** The /etc/netns directories of lab `lab` that exist right now (by its namespace name pattern). */
export function labNetnsEtcDirs(lab: string): string[] {
  const pattern = labNetnsPattern(lab);
  try {
    return readdirSync(NETNS_ETC_DIR).filter((name) => pattern.test(name));
  } catch {
    return [];
  }
}

/** Removes every /etc/netns directory of lab `lab`, and /etc/netns itself once empty. */
export function removeLabNetnsEtc(lab: string): number {
  const dirs = labNetnsEtcDirs(lab);
  for (const netns of dirs) removeNetnsEtc(netns);
  try {
    // Only an empty one goes: other tools may keep files here.
    if (readdirSync(NETNS_ETC_DIR).length === 0) rmdirSync(NETNS_ETC_DIR);
  } catch { /* none, or not ours to remove */ }
  return dirs.length;
}

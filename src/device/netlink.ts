// The addon's small rtnetlink helper (native/src/netlink.cc).
import { nativeAddon } from './native.ts';

/**
 * Moves link `ifname` (in this process's namespace) into the namespace at `netnsPath`
 * (/proc/<pid>/ns/net, /var/run/netns/<name>, a CNI netns path), renaming it to
 * `newName` in the same RTM_NEWLINK so it never appears there under its old name.
 * An open TUN/TAP fd stays attached. Throws DeviceError: ENODEV (no such link,
 * syscall 'if_nametoindex'), ENOENT (no such namespace file, 'open'), EEXIST (name
 * taken there, 'RTM_NEWLINK'), EINVAL (not a network namespace, 'RTM_NEWLINK').
 */
export function moveLinkToNetns(ifname: string, netnsPath: string, newName?: string): void {
  nativeAddon().moveLinkToNetns(ifname, netnsPath, newName);
}

/** The interface index of `name` in this process's namespace; DeviceError ENODEV if absent. */
export function linkIndex(name: string): number {
  return nativeAddon().linkIndex(name);
}

// Processes of the lab: started detached so they outlive `lab up`, found again by the
// network namespace they run in (/proc/PID/ns/net against the inode of
// /run/netns/NAME), which also catches what a crash left unrecorded and anything a
// user started with `lab exec`.
import { openSync, closeSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { spawnIn } from '../../device/ip-command.ts';
import { NETNS_DIR } from './names.ts';
import { sleep } from './shell.ts';

/** The nsfs inode of each named namespace that still exists. */
export function netnsInodes(netns: string[]): Map<number, string> {
  const inodes = new Map<number, string>();
  for (const name of netns) {
    try {
      inodes.set(statSync(`${NETNS_DIR}/${name}`).ino, name);
    } catch { /* already gone */ }
  }
  return inodes;
}

/** PIDs (not this process) whose network namespace is one of `netns`. */
export function pidsInNetns(netns: string[]): number[] {
  const inodes = netnsInodes(netns);
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${entry}/ns/net`));
      if (m !== null && inodes.has(Number(m[1]))) pids.push(pid);
    } catch { /* exited meanwhile, or a kernel thread */ }
  }
  return pids;
}

/** Alive and not a zombie (a zombie has exited; only its parent's wait() is missing). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state letter follows the command name in parentheses, which may hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM, up to `graceMs` to exit, then SIGKILL. Returns how many were signalled. */
export async function stopProcesses(pids: number[], graceMs: number): Promise<number> {
  let signalled = 0;
  for (const pid of pids) {
    try { process.kill(pid, 'SIGTERM'); signalled++; } catch { /* gone */ }
  }
  const deadline = Date.now() + graceMs;
  let alive = pids.filter(isAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    await sleep(25);
    alive = alive.filter(isAlive);
  }
  for (const pid of alive) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  const killDeadline = Date.now() + 2000;
  while (alive.some(isAlive) && Date.now() < killDeadline) await sleep(10);
  return signalled;
}

/**
 * Starts `ip netns exec NETNS argv…` (or `nsenter --net`, see `mounts`) in its own
 * session, stdout and stderr appended to `log`, and lets go of it: the lab command may
 * exit, the process stays. Both exec the command after setns, so the returned PID is
 * the command's own.
 */
export function spawnDetached(netns: string, argv: string[], log: string, env: NodeJS.ProcessEnv = process.env, mounts: 'own' | 'host' = 'own'): number {
  const fd = openSync(log, 'a');
  try {
    const options = { detached: true, stdio: ['ignore', fd, fd] as ['ignore', number, number], env };
    // 'own': `ip netns exec` (its own mount namespace, /sys of the netns); 'host': nsenter
    // --net only, so namespaces the process adds under /run/netns are visible to the host.
    const child = mounts === 'own' ? spawnIn(netns, argv, options) : spawn('nsenter', [`--net=/run/netns/${netns}`, '--', ...argv], options);
    child.on('error', () => {}); // reported by the caller's readiness check
    child.unref();
    if (child.pid === undefined) throw new Error(`cannot start ${argv[0]} in ${netns}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** The last lines of a log file, for error messages. */
export function logTail(path: string, lines = 15): string {
  try {
    const text = readFileSync(path, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).map((l) => `  | ${l}`).join('\n');
  } catch {
    return '  | (no log)';
  }
}

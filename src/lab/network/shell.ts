// The lab's side of running ip(8) and bridge(8) (src/device/ip-command.ts runs them):
// batches (`ip -n NS -batch -`) keep `lab up` quick, one process per namespace instead
// of one per command, and a failure becomes a LabError naming the failing line. Also
// the lab's sleeps, which an interrupted `lab up` cuts short.
import { ipBatch as runBatch, IpCommandError, tryRunIn, type BatchOptions } from '../../device/ip-command.ts';
import { LabError } from '../validate.ts';

async function batch(lines: string[], opts: BatchOptions): Promise<void> {
  try {
    await runBatch(lines, opts);
  } catch (err) {
    if (err instanceof IpCommandError) throw new LabError('COMMAND_FAILED', err.message);
    throw err;
  }
}

/** `ip [-n NETNS] -batch -`: stops at the first failing line and names it (`force`: goes on, never throws). */
export function ipBatch(netns: string | null, lines: string[], force = false): Promise<void> {
  return batch(lines, { ...(netns === null ? {} : { netns }), force });
}

/** `bridge [-n NETNS] -batch -` for FDB entries. */
export function bridgeBatch(netns: string | null, lines: string[]): Promise<void> {
  return batch(lines, { ...(netns === null ? {} : { netns }), tool: 'bridge' });
}

/**
 * Sets IPv4 and IPv6 forwarding inside `netns` (sysctls of that namespace only): a node
 * forwards what it takes in for its pods, node ports included, in both families.
 */
export async function enableForwarding(netns: string): Promise<void> {
  const r = await tryRunIn(netns, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding']);
  if (r.code !== 0) throw new LabError('COMMAND_FAILED', `enabling forwarding in ${netns} failed (exit ${r.code}): ${r.stderr.trim()}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Aborted when `lab up` is interrupted (Ctrl-C): every wait loop of `up` sleeps with
 * `interruptibleSleep` and so ends at its next turn, and `up` removes what it built.
 * Teardown uses plain `sleep`, which an interruption does not stop.
 */
export const interruption = new AbortController();

export async function interruptibleSleep(ms: number): Promise<void> {
  interruption.signal.throwIfAborted();
  await sleep(ms);
  interruption.signal.throwIfAborted();
}

// Running ip(8), bridge(8) and friends. Batches (`ip -n NS -batch -`) keep `lab up`
// quick: one process per namespace instead of one per command.
import { execFile } from 'node:child_process';
import { LabError } from './validate.ts';

export interface RunResult { code: number; stdout: string; stderr: string }

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Runs a command to completion; never throws for a non-zero exit (see `run`). */
export function tryRun(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, env: opts.env ?? process.env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err === null) return resolve({ code: 0, stdout, stderr });
      const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
      let code = typeof e.code === 'number' ? e.code : 127;
      if (e.killed || e.signal) code = 124;
      resolve({ code, stdout, stderr: stderr || e.message });
    });
    // A command that exits early closes its stdin; an EPIPE here is that, not an error.
    child.stdin?.on('error', () => {});
    child.stdin?.end(opts.input ?? '');
  });
}

/** Runs a command and returns stdout; a failure throws with the command and its stderr. */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const result = await tryRun(cmd, args, opts);
  if (result.code !== 0) {
    throw new LabError('COMMAND_FAILED', `${cmd} ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
  }
  return result.stdout;
}

/** `ip [-n NETNS] -batch -`: stops at the first failing line and names it. */
export async function ipBatch(netns: string | null, lines: string[], force = false): Promise<void> {
  if (lines.length === 0) return;
  await batch('ip', netns, lines, force);
}

/** `bridge [-n NETNS] -batch -` for FDB entries. */
export async function bridgeBatch(netns: string | null, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  await batch('bridge', netns, lines, false);
}

async function batch(tool: string, netns: string | null, lines: string[], force: boolean): Promise<void> {
  const args = [...(netns === null ? [] : ['-n', netns]), ...(force ? ['-force'] : []), '-batch', '-'];
  const result = await tryRun(tool, args, { input: `${lines.join('\n')}\n` });
  if (result.code !== 0 && !force) {
    // iproute2 reports "Command failed -:N" with N the 1-based line number.
    const m = /Command failed -:(\d+)/.exec(result.stderr);
    const line = m === null ? '' : ` at "${lines[Number(m[1]) - 1]}"`;
    throw new LabError('COMMAND_FAILED', `${tool} ${args.join(' ')}${netns === null ? '' : ` (in ${netns})`} failed${line}: ${result.stderr.trim()}`);
  }
}

/** Runs a command inside a named network namespace and returns stdout. */
export function nsRun(netns: string, cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  return run('ip', ['netns', 'exec', netns, cmd, ...args], opts);
}

export function nsTryRun(netns: string, cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return tryRun('ip', ['netns', 'exec', netns, cmd, ...args], opts);
}

/** Sets IPv4 forwarding inside `netns` (a sysctl of that namespace only). */
export function enableForwarding(netns: string): Promise<string> {
  return nsRun(netns, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward']);
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

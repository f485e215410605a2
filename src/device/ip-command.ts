// The one way Tapir runs iproute2 (ip(8), bridge(8)) and the other network tools of
// the system (tc, nft, iptables-restore, conntrack): argument arrays through execFile,
// so no shell ever sees a name, a path or an address. The agent, the CNI plugin, the
// lab, the kernel proxy and `tapir demo` all come here.
//
// A network namespace is named the way iproute2 names them: a bare name lives in
// /run/netns (`ip -n NAME`, `ip netns exec NAME`), anything with a slash is a path to a
// namespace file (a container runtime's /proc/PID/ns/net or /var/run/netns/cni-…),
// entered with `nsenter --net=PATH`, because `ip -n` takes names only.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { TapirError } from '../errors/tapir-error.ts';

export interface CommandResult {
  /** The exit code; 124 when the command was killed (timeout), 127 when it could not start. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  /** Written to the command's stdin (which is closed either way). */
  input?: string;
  /** Default 30 s: long enough for an `ip -batch` of a whole lab node or a big nft transaction. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface IpOptions extends CommandOptions {
  /** Run inside this network namespace: a name in /run/netns, or a path. */
  netns?: string;
}

/** An ip(8) or bridge(8) command that failed; the message names the command, the namespace and what the tool said. */
export class IpCommandError extends TapirError {
  readonly code = 'TAPIR_IP_COMMAND';
  /** The tool's own exit status (not the CLI's: that is TapirError's exitCode). */
  readonly status: number;
  readonly stderr: string;
  constructor(message: string, status: number, stderr: string) {
    super(message);
    this.status = status;
    this.stderr = stderr;
  }
}

/** Runs a command to completion; never throws for a failure (look at `code`). */
export function tryRun(cmd: string, args: string[], opts: CommandOptions = {}): Promise<CommandResult> {
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

/** The argv that runs iproute2's `tool` with `args` in `netns` (see the header for names and paths). */
function toolArgv(tool: string, args: string[], netns: string | undefined): [string, string[]] {
  if (netns === undefined) return [tool, args];
  if (netns.includes('/')) return ['nsenter', [`--net=${netns}`, tool, ...args]];
  return [tool, ['-n', netns, ...args]];
}

function describe(tool: string, args: string[], netns: string | undefined): string {
  return `${tool} ${args.join(' ')}${netns === undefined ? '' : ` in ${netns}`}`;
}

/** `ip ARGS` (in `opts.netns`); never throws for a failure. */
export function tryIp(args: string[], opts: IpOptions = {}): Promise<CommandResult> {
  const [cmd, argv] = toolArgv('ip', args, opts.netns);
  return tryRun(cmd, argv, opts);
}

/** `ip ARGS` (in `opts.netns`), returning stdout; a failure throws `IpCommandError` ("ip ARGS in NETNS: what ip said"). */
export async function ip(args: string[], opts: IpOptions = {}): Promise<string> {
  const r = await tryIp(args, opts);
  if (r.code !== 0) throw new IpCommandError(`${describe('ip', args, opts.netns)}: ${r.stderr.trim()}`, r.code, r.stderr);
  return r.stdout;
}

export interface BatchOptions extends IpOptions {
  /** `ip` (the default) or `bridge` (FDB entries). */
  tool?: 'ip' | 'bridge';
  /** `-force`: go on past failing lines and do not throw (teardown). */
  force?: boolean;
}

/**
 * `ip -batch -` (or `bridge -batch -`): one process for many commands, which keeps
 * building a lab node quick. Stops at the first failing line, and the error names it.
 */
export async function ipBatch(lines: string[], opts: BatchOptions = {}): Promise<void> {
  if (lines.length === 0) return;
  const tool = opts.tool ?? 'ip';
  const args = [...(opts.force === true ? ['-force'] : []), '-batch', '-'];
  const [cmd, argv] = toolArgv(tool, args, opts.netns);
  const r = await tryRun(cmd, argv, { ...opts, input: `${lines.join('\n')}\n` });
  if (r.code !== 0 && opts.force !== true) {
    // iproute2 reports "Command failed -:N" with N the 1-based line number.
    const m = /Command failed -:(\d+)/.exec(r.stderr);
    const line = m === null ? '' : ` at "${lines[Number(m[1]) - 1]}"`;
    throw new IpCommandError(`${describe(tool, args, opts.netns)} failed${line}: ${r.stderr.trim()}`, r.code, r.stderr);
  }
}

/** `ip netns exec NETNS CMD ARGS` to completion (NETNS a name in /run/netns); never throws for a failure. */
export function tryRunIn(netns: string, cmd: string, args: string[], opts: CommandOptions = {}): Promise<CommandResult> {
  return tryRun('ip', ['netns', 'exec', netns, cmd, ...args], opts);
}

/**
 * Starts `argv` inside the named namespace (`ip netns exec`, which also gives it the
 * namespace's /etc/netns files and a /sys of that namespace) and returns the child, for
 * callers that stream its output, wait for it or leave it running.
 */
export function spawnIn(netns: string, argv: string[], options: SpawnOptions = {}): ChildProcess {
  return spawn('ip', ['netns', 'exec', netns, ...argv], options);
}

// Network namespaces for tests. Every name starts with "tp" plus the caller's tag and a
// random suffix, so parallel tests never collide and leftovers are recognisable.
// Always register `ns.destroy()` (or `using`) so a failing test still tears down.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export function uniqueName(tag: string, length = 12): string {
  const suffix = randomBytes(4).toString('hex');
  return `tp${tag}${suffix}`.slice(0, length);
}

/** Runs a command, throws with its stderr on failure, returns stdout. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input: opts.input, timeout: opts.timeoutMs ?? 30_000, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.message}${e.stdout ? `\nstdout: ${e.stdout}` : ''}`);
  }
}

export class Netns implements Disposable {
  readonly name: string;
  readonly #children = new Set<ChildProcess>();

  constructor(tag: string) {
    this.name = uniqueName(tag);
    run('ip', ['netns', 'add', this.name]);
    this.exec('ip', ['link', 'set', 'lo', 'up']);
  }

  /** Runs a command inside the namespace and returns its stdout. */
  exec(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  /** Starts a long-running command inside the namespace; it is killed by destroy(). */
  spawn(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: 'pipe', ...opts });
    this.#children.add(child);
    child.on('exit', () => this.#children.delete(child));
    return child;
  }

  destroy(): void {
    for (const child of this.#children) child.kill('SIGKILL');
    this.#children.clear();
    // Processes started by hand inside the namespace (e.g. iperf3 -D) would keep it
    // alive in /proc but `ip netns delete` still removes the name and its devices.
    try { run('ip', ['netns', 'pids', this.name]).split('\n').filter(Boolean).forEach((pid) => { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }); } catch { /* already gone */ }
    try { run('ip', ['netns', 'delete', this.name]); } catch { /* already gone */ }
  }

  [Symbol.dispose](): void { this.destroy(); }
}

/** Creates a veth pair with one end in each namespace and returns the two device names. */
export function vethPair(a: Netns, b: Netns, tag = 'v'): [string, string] {
  const ifA = uniqueName(tag, 15);
  const ifB = uniqueName(tag, 15);
  run('ip', ['link', 'add', ifA, 'netns', a.name, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.name]);
  a.exec('ip', ['link', 'set', ifA, 'up']);
  b.exec('ip', ['link', 'set', ifB, 'up']);
  return [ifA, ifB];
}

/** Waits until `check` returns true, polling every `intervalMs`, for at most `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function hasCommand(cmd: string): boolean {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true; } catch { return false; }
}

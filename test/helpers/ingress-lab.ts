// A network namespace with an Ingress proxy process and backend processes in it, for the
// Ingress tests (prefix "ting-") and benchmark ("tbing-"). All traffic stays inside the
// namespace: clients (curl, h2load, wrk, node) run there with `exec`/`spawn`. The
// namespace, and every process in it, goes with `destroy()` (register it before
// anything that can fail).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { IngressConfig } from '../../src/ingress/model.ts';
import { run } from './netns.ts';

const HELPERS = fileURLToPath(new URL('.', import.meta.url));

export class IngressNetns implements Disposable {
  readonly name: string;
  readonly dir: string;
  readonly #children = new Set<ChildProcess>();

  constructor(prefix: 'ting-' | 'tbing-') {
    this.name = `${prefix}${randomBytes(4).toString('hex')}`;
    this.dir = mkdtempSync(join(tmpdir(), `${this.name}-`));
    run('ip', ['netns', 'add', this.name]);
    this.exec('ip', ['link', 'set', 'lo', 'up']);
  }

  exec(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  /** Runs a command in the namespace; resolves with its exit code and output (never rejects). */
  execAsync(cmd: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = this.spawn(cmd, args);
      let stdout = '', stderr = '';
      child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    });
  }

  spawn(cmd: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: 'pipe' });
    this.#children.add(child);
    child.on('exit', () => this.#children.delete(child));
    return child;
  }

  /** Starts a long-running process and waits for a line of its stdout that `ready` accepts. */
  async start(cmd: string, args: string[], ready: (line: string) => boolean, timeoutMs = 20_000): Promise<{ child: ChildProcess; lines: Interface; first: string }> {
    const child = this.spawn(cmd, args);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const lines = createInterface({ input: child.stdout! });
    const first = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${cmd} ${args.join(' ')} not ready within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
      const onLine = (line: string): void => {
        if (!ready(line)) return;
        clearTimeout(timer);
        lines.off('line', onLine);
        resolve(line);
      };
      lines.on('line', onLine);
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${cmd} exited (${code}) before it was ready: ${stderr}`)); });
    });
    return { child, lines, first };
  }

  destroy(): void {
    for (const child of this.#children) child.kill('SIGKILL');
    this.#children.clear();
    try { run('ip', ['netns', 'pids', this.name]).split('\n').filter(Boolean).forEach((pid) => { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }); } catch { /* gone */ }
    try { run('ip', ['netns', 'delete', this.name]); } catch { /* gone */ }
    rmSync(this.dir, { recursive: true, force: true });
  }

  [Symbol.dispose](): void { this.destroy(); }
}

/** The backends helper (ingress-backends.ts) serving NAME=IP:PORT endpoints. */
export async function startBackends(ns: IngressNetns, endpoints: Record<string, string>, cpu?: number): Promise<ChildProcess> {
  const args = [join(HELPERS, 'ingress-backends.ts'), ...Object.entries(endpoints).map(([n, a]) => `${n}=${a}`)];
  const { child } = await ns.start(cpu === undefined ? process.execPath : 'taskset', cpu === undefined ? args : ['-c', String(cpu), process.execPath, ...args], (l) => l === 'ready');
  return child;
}

/** Where node's own output of the proxy process goes (TAPIR_PROXY_LOG), if anywhere. */
const PROXY_LOG = process.env.TAPIR_PROXY_LOG;

/** The proxy process (ingress-child.ts) and its command channel. */
export class ProxyProcess {
  readonly child: ChildProcess;
  readonly #lines: Interface;
  readonly #waiting: ((msg: Record<string, unknown>) => void)[] = [];

  /** What serves its h2 clients: "native" (the addon's nghttp2 session) or "node" (node:http2). */
  h2Engine = '';
  /** What its plain HTTP/1.1 sockets are: "native" (the addon's, h1-native.ts), "net" (node:net) or "node:http". */
  h1Wire = '';

  private constructor(child: ChildProcess, lines: Interface) {
    this.child = child;
    this.#lines = lines;
    this.#lines.on('line', (line) => {
      if (!line.startsWith('{')) {
        // node's own output (--trace-gc), not an answer: kept, with the wall clock in ms, where TAPIR_PROXY_LOG names a file.
        if (PROXY_LOG !== undefined) appendFileSync(PROXY_LOG, `${Date.now()} ${line}\n`);
        return;
      }
      const msg = JSON.parse(line) as Record<string, unknown>;
      this.#waiting.shift()?.(msg);
    });
  }

  /** `address` default '0.0.0.0'; 'default' leaves it to the proxy (both families). */
  /** `cpu`: pinned to that core (taskset); `nofile`: at most that many open descriptors (prlimit). */
  static async start(ns: IngressNetns, opts: { http: number; https: number; certPem: string; keyPem: string; cpu?: number; address?: string; nodeArgs?: string[]; nofile?: number }): Promise<ProxyProcess> {
    const cert = join(ns.dir, 'default.crt'), key = join(ns.dir, 'default.key');
    writeFileSync(cert, opts.certPem);
    writeFileSync(key, opts.keyPem);
    let command = [process.execPath, ...(opts.nodeArgs ?? []), join(HELPERS, 'ingress-child.ts'), String(opts.http), String(opts.https), opts.address ?? '0.0.0.0', cert, key];
    if (opts.cpu !== undefined) command = ['taskset', '-c', String(opts.cpu), ...command];
    if (opts.nofile !== undefined) command = ['prlimit', `--nofile=${opts.nofile}`, ...command];
    const { child, lines, first } = await ns.start(command[0]!, command.slice(1), (l) => l.startsWith('{"op":"ready"'));
    const proxy = new ProxyProcess(child, lines);
    const ready = JSON.parse(first) as { h2: string; h1: string };
    proxy.h2Engine = ready.h2;
    proxy.h1Wire = ready.h1;
    return proxy;
  }

  #ask(msg: unknown): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the proxy process did not answer within 10 s')), 10_000);
      this.#waiting.push((m) => { clearTimeout(timer); resolve(m); });
      this.child.stdin!.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** setConfig in the proxy; resolves once it serves the configuration. */
  async setConfig(config: IngressConfig): Promise<void> {
    const reply = await this.#ask({ op: 'config', config: { ...config, certificates: [...config.certificates] } });
    if (reply.generation !== config.generation) throw new Error(`the proxy serves generation ${String(reply.generation)}, not ${config.generation}`);
  }

  /** Closes its stdin: the proxy stops and the process exits (a --cpu-prof is written). */
  async stop(timeoutMs = 5_000): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.end();
    await Promise.race([exited, new Promise((r) => setTimeout(r, timeoutMs))]);
  }

  async memory(): Promise<NodeJS.MemoryUsage> {
    return (await this.#ask({ op: 'memory' })) as unknown as NodeJS.MemoryUsage;
  }

  async metrics(): Promise<string> {
    return (await this.#ask({ op: 'metrics' })).text as string;
  }
}

/** A self-signed certificate for `names` with subject CN=`cn` (openssl CLI). */
export function makeCertificate(dir: string, cn: string, names: string[]): { certPem: string; keyPem: string } {
  const base = join(dir, cn.replace(/[^a-z0-9]/gi, '_'));
  run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.crt`,
    '-days', '2', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`]);
  return { certPem: run('cat', [`${base}.crt`]), keyPem: run('cat', [`${base}.key`]) };
}

/** h2load's summary: requests done/succeeded/failed/errored and status classes. */
export interface H2loadResult { done: number; succeeded: number; failed: number; errored: number; timeout: number; s2xx: number; s3xx: number; s4xx: number; s5xx: number; rps: number; raw: string }

export function parseH2load(out: string): H2loadResult {
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const rps = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  if (req === null || codes === null) throw new Error(`h2load printed no summary:\n${out}`);
  return {
    done: Number(req[3]), succeeded: Number(req[4]), failed: Number(req[5]), errored: Number(req[6]), timeout: Number(req[7]),
    s2xx: Number(codes[1]), s3xx: Number(codes[2]), s4xx: Number(codes[3]), s5xx: Number(codes[4]), rps: rps === null ? NaN : Number(rps[1]), raw: out,
  };
}

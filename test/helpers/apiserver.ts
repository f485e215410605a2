// A lab API server run as the lab runs it (`tapir lab apiserver` in a child process, one
// listener on a socket the parent opened and handed down as fd 3, one of its own), with
// the clients the tests use: the real kubectl from .tapir/bin and a raw HTTPS client for
// watches and fault injection.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubeconfig, writeTokenFile } from '../../src/lab/apiserver/kubeconfig.ts';
import { injectFault } from '../../src/lab/apiserver/main.ts';
import { TAPIR } from './lab.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
export const KUBECTL = join(ROOT, '.tapir/bin/kubectl');
export const RBAC_YAML = join(ROOT, 'deploy/kubernetes/rbac.yaml');

export const TOKENS = {
  admin: 'admin-token-0123456789',
  tapir: 'tapir-sa-token-0123456789',
  nobody: 'nobody-sa-token-0123456789',
} as const;

export interface KubectlResult { code: number; stdout: string; stderr: string }

export class ApiServerProcess {
  readonly dir: string;
  /** The listener on the inherited fd (kubectl's) and the server's own one (raw clients'). */
  fdPort = 0;
  ownPort = 0;
  private child: ChildProcess | undefined;
  /** More `tapir lab apiserver` flags (--service-cidr, --controllers). */
  private readonly extraArgs: readonly string[];

  constructor(extraArgs: readonly string[] = []) {
    this.extraArgs = extraArgs;
    this.dir = mkdtempSync(join(tmpdir(), 'tapir-apiserver-'));
    writeTokenFile(join(this.dir, 'tokens.csv'), [
      { token: TOKENS.admin, user: 'kubernetes-admin', groups: ['system:masters'] },
      { token: TOKENS.tapir, user: 'system:serviceaccount:kube-system:tapir', groups: [] },
      { token: TOKENS.nobody, user: 'system:serviceaccount:default:nobody', groups: [] },
    ]);
  }

  get state(): string {
    return join(this.dir, 'state');
  }

  get caFile(): string {
    return join(this.state, 'tls/ca.crt');
  }

  get server(): string {
    return `https://127.0.0.1:${this.ownPort}`;
  }

  /** Starts (or restarts, on the same state directory) the server. */
  async start(): Promise<void> {
    // The parent opens the listening socket, as `tapir lab up` in the root namespace would,
    // and closes its own copy once the child holds one.
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    this.fdPort = (holder.address() as AddressInfo).port;
    const fd = (holder as unknown as { _handle: { fd: number } })._handle.fd;
    this.child = spawn(TAPIR, ['lab', 'apiserver', '--dir', this.state, '--token-file', join(this.dir, 'tokens.csv'), '--listen-fd', '3', '--listen', '127.0.0.1:0', '--bootstrap', RBAC_YAML, '--bookmark-interval', '1', ...this.extraArgs], { stdio: ['ignore', 'pipe', 'pipe', fd] });
    holder.close();
    const child = this.child;
    let stderr = '';
    // The server's complaints (a crash, an internal error) belong in the test's output.
    child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); process.stderr.write(`apiserver: ${c.toString()}`); });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`apiserver did not start in 60 s: ${stderr}`)), 60_000);
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        const nl = out.indexOf('\n');
        if (nl >= 0) { clearTimeout(timer); resolve(out.slice(0, nl)); }
      });
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`apiserver exited ${code}: ${stderr}`)); });
    });
    const listening = (JSON.parse(line) as { listening: { port: number }[] }).listening;
    assert.equal(listening.length, 2);
    // --listen listeners come first, then the inherited ones.
    assert.equal(listening[1]!.port, this.fdPort, 'the second listener is the inherited socket');
    this.ownPort = listening[0]!.port;
    writeFileSync(join(this.dir, 'admin.kubeconfig'), kubeconfig('lab', `https://127.0.0.1:${this.fdPort}`, this.caFile, TOKENS.admin));
    writeFileSync(join(this.dir, 'tapir.kubeconfig'), kubeconfig('lab', `https://127.0.0.1:${this.fdPort}`, this.caFile, TOKENS.tapir));
    writeFileSync(join(this.dir, 'nobody.kubeconfig'), kubeconfig('lab', `https://127.0.0.1:${this.fdPort}`, this.caFile, TOKENS.nobody));
    writeFileSync(join(this.dir, 'wrong.kubeconfig'), kubeconfig('lab', `https://127.0.0.1:${this.fdPort}`, this.caFile, 'not-a-token'));
  }

  /** SIGTERM, and waits for the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async cleanup(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Runs kubectl with one of the written kubeconfigs (admin, tapir, nobody, wrong). */
  async kubectl(args: string[], as: 'admin' | 'tapir' | 'nobody' | 'wrong' = 'admin', stdin?: string): Promise<KubectlResult> {
    const env = { ...process.env, KUBECONFIG: join(this.dir, `${as}.kubeconfig`), HOME: this.dir };
    return await new Promise((resolve) => {
      const child = execFile(KUBECTL, args, { env, timeout: 60_000 }, (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
      });
      if (stdin !== undefined) child.stdin!.end(stdin);
    });
  }

  /** kubectl that must succeed; returns stdout. */
  async ok(args: string[], stdin?: string): Promise<string> {
    const r = await this.kubectl(args, 'admin', stdin);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  /** One request with the admin token (or `token`); resolves with status and parsed JSON. */
  async api(method: string, path: string, body?: unknown, token: string = TOKENS.admin, contentType = 'application/json'): Promise<{ status: number; body: Record<string, unknown> }> {
    return await new Promise((resolve, reject) => {
      const req = request(new URL(path, this.server), { method, agent: false, ca: readFileSync(this.caFile), headers: { authorization: `Bearer ${token}`, 'content-type': contentType } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown> });
        });
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /** Opens a watch; its events accumulate in `events` until the server or `close()` ends it. */
  watch(path: string): Watch {
    return new Watch(new URL(path, this.server), readFileSync(this.caFile));
  }

  async fault(name: string, params: Record<string, number> = {}): Promise<Record<string, unknown>> {
    return await injectFault({ server: this.server, caFile: this.caFile, token: TOKENS.admin }, name, params);
  }
}

export interface WatchEvent { type: string; object: { kind?: string; code?: number; reason?: string; metadata?: { name?: string; resourceVersion?: string } } }

export class Watch {
  readonly events: WatchEvent[] = [];
  ended = false;
  status = 0;
  private readonly waiters: (() => void)[] = [];
  private readonly req;

  constructor(url: URL, ca: Buffer) {
    this.req = request(url, { agent: false, ca, headers: { authorization: `Bearer ${TOKENS.admin}` } }, (res) => {
      this.status = res.statusCode ?? 0;
      let buffered = '';
      res.on('data', (c: Buffer) => {
        buffered += c.toString();
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          this.events.push(JSON.parse(buffered.slice(0, nl)) as WatchEvent);
          buffered = buffered.slice(nl + 1);
        }
        this.wake();
      });
      res.on('close', () => { this.ended = true; this.wake(); });
    });
    this.req.on('error', () => { this.ended = true; this.wake(); });
    this.req.end();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits (at most 20 s, a bound against hanging, not a measurement) until `done` holds. */
  async until(done: (w: Watch) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (!done(this)) {
      if (Date.now() > deadline) throw new Error(`watch: timed out waiting for ${what}; events: ${JSON.stringify(this.events.map((e) => `${e.type} ${e.object.metadata?.name ?? e.object.reason ?? ''}`))}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 500);
      });
    }
  }

  names(type: string): string[] {
    return this.events.filter((e) => e.type === type).map((e) => String(e.object.metadata?.name));
  }

  close(): void {
    this.req.destroy();
  }
}

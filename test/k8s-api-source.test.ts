// The Kubernetes API source's reflectors against a small API server double that can do
// what a real one does on a bad day (a test double serves faults a real part cannot be
// made to produce on demand): watches closed, 410 Gone, stalled streams, history
// compacted while objects vanished, an unreachable server, invalid objects, paging,
// 403 on the first list. After each fault the source must end with exactly the
// server's objects, without being restarted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { KubernetesSource, PROXY_LABEL_SELECTOR } from '../src/k8s/api-source.ts';
import { KubernetesSourceError } from '../src/k8s/reflector.ts';
import { KubeApi } from '../src/k8s/kube-api.ts';
import { Kind, type K8sObject } from '../src/k8s/objects.ts';
import type { ObjectChange } from '../src/k8s/object-source.ts';

interface Event { type: string; object: Record<string, unknown>; rv: number }

/** Services only, in namespace default: enough to exercise a reflector. */
class FakeApi {
  rv = 100;
  objects = new Map<string, Record<string, unknown>>();
  events: Event[] = [];
  /** Watches at or below this version get 410 (history compacted). */
  compactedTo = 0;
  mode: 'ok' | 'stall' | 'forbidden' = 'ok';
  watchRequests: URLSearchParams[] = [];
  listRequests: URLSearchParams[] = [];
  readonly #streams = new Set<ServerResponse>();
  server: Server;
  port = 0;

  constructor() {
    this.server = createServer((req, res) => this.#handle(req, res));
  }

  async listen(port = 0): Promise<void> {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.#streams) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  service(name: string, port = 80, extra: Record<string, unknown> = {}): void {
    const type = this.objects.has(name) ? 'MODIFIED' : 'ADDED';
    const obj = {
      metadata: { name, namespace: 'default', resourceVersion: String(++this.rv), uid: `uid-${name}` },
      spec: { type: 'ClusterIP', clusterIP: `10.96.0.${10 + this.objects.size}`, ports: [{ name: 'http', port, protocol: 'TCP', targetPort: 8080 }], ...extra },
    };
    this.objects.set(name, obj);
    this.#publish({ type, object: obj, rv: this.rv });
  }

  remove(name: string): void {
    const obj = this.objects.get(name)!;
    this.objects.delete(name);
    const gone = { ...obj, metadata: { ...(obj.metadata as object), resourceVersion: String(++this.rv) } };
    this.#publish({ type: 'DELETED', object: gone, rv: this.rv });
  }

  /** Drops every open watch stream (as an API server restart or a load balancer does). */
  closeWatches(): void {
    for (const s of this.#streams) s.end();
    this.#streams.clear();
  }

  #publish(e: Event): void {
    this.events.push(e);
    for (const s of this.#streams) if (this.mode !== 'stall') s.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url!, 'http://x');
    if (req.headers.authorization !== 'Bearer t0ken') return this.#status(res, 401, 'Unauthorized', 'no token');
    if (this.mode === 'forbidden') return this.#status(res, 403, 'Forbidden', 'services is forbidden: User "system:serviceaccount:kube-system:tapir" cannot list resource "services"');
    if (url.pathname !== '/api/v1/services') return this.#status(res, 404, 'NotFound', url.pathname);
    if (url.searchParams.get('watch') === '1') return this.#watch(url.searchParams, res);
    this.listRequests.push(url.searchParams);
    const all = [...this.objects.values()].sort((a, b) => String((a.metadata as { name: string }).name).localeCompare(String((b.metadata as { name: string }).name)));
    const limit = Number(url.searchParams.get('limit') ?? 0) || all.length;
    const start = Number(url.searchParams.get('continue') || 0);
    const items = all.slice(start, start + limit);
    const more = start + limit < all.length;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ kind: 'ServiceList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv), ...(more ? { continue: String(start + limit) } : {}) }, items }));
  }

  #watch(q: URLSearchParams, res: ServerResponse): void {
    this.watchRequests.push(q);
    const from = Number(q.get('resourceVersion') ?? 0);
    res.setHeader('content-type', 'application/json');
    res.writeHead(200);
    if (from < this.compactedTo) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: `too old resource version: ${from} (${this.compactedTo})`, reason: 'Expired', code: 410 } })}\n`);
      return;
    }
    res.flushHeaders();
    if (this.mode !== 'stall') for (const e of this.events) if (e.rv > from) res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
    this.#streams.add(res);
    res.on('close', () => this.#streams.delete(res));
  }

  #status(res: ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason, code }));
  }
}

function kubeconfig(dir: string, port: number): string {
  const file = join(dir, 'kubeconfig');
  writeFileSync(file, `apiVersion: v1
kind: Config
clusters: [{ name: fake, cluster: { server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true } }]
users: [{ name: tapir, user: { token: t0ken } }]
contexts: [{ name: fake, context: { cluster: fake, user: tapir } }]
current-context: fake
`);
  return file;
}

/** Collects what a handler sees: the objects by name, problems by input, synced kinds. */
class Recorder {
  objects = new Map<string, K8sObject>();
  changes: ObjectChange[] = [];
  problems = new Map<string, readonly string[]>();
  synced: Kind[] = [];
  onChange(c: ObjectChange): void {
    this.changes.push(c);
    if (c.current === undefined) this.objects.delete(c.previous!.metadata.name);
    else this.objects.set(c.current.metadata.name, c.current);
  }
  onSynced(kind: Kind): void { this.synced.push(kind); }
  onProblems(input: string, problems: readonly string[]): void {
    if (problems.length === 0) this.problems.delete(input);
    else this.problems.set(input, problems);
  }
  onError(err: Error): void { throw err; }
  names(): string[] { return [...this.objects.keys()].sort(); }
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function setup(t: { after(fn: () => unknown): void }, opts: { idleMs?: number; pageSize?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tpt-kube-'));
  const fake = new FakeApi();
  await fake.listen();
  const api = new KubeApi({ kubeconfig: kubeconfig(dir, fake.port) });
  const logs: string[] = [];
  const restarts: string[] = [];
  const reachable: boolean[] = [];
  const source = new KubernetesSource({
    api, kinds: [{ kind: Kind.SERVICE, labelSelector: PROXY_LABEL_SELECTOR }],
    watchIdleMs: opts.idleMs ?? 2000, pageSize: opts.pageSize ?? 500, log: (m) => logs.push(m),
    onRestart: (kind, reason) => restarts.push(`${kind}/${reason}`),
    onReachable: (ok) => reachable.push(ok),
  });
  const rec = new Recorder();
  source.watch(rec);
  t.after(async () => {
    source.stop();
    await fake.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  return { fake, source, rec, logs, restarts, reachable };
}

test('list then watch: the first list is synced whole, then adds, changes and deletes arrive; selectors are sent', async (t) => {
  const { fake, source, rec } = await setup(t, { pageSize: 2 });
  for (const n of ['a', 'b', 'c', 'd', 'e']) fake.service(n);
  await source.start();
  assert.deepEqual(rec.synced, [Kind.SERVICE]);
  assert.deepEqual(rec.names(), ['a', 'b', 'c', 'd', 'e'], 'five objects over three pages');
  assert.equal(fake.listRequests.length, 3);
  assert.equal(fake.listRequests[0]!.get('labelSelector'), PROXY_LABEL_SELECTOR);
  await until('a watch', () => fake.watchRequests.length === 1);
  const w = fake.watchRequests[0]!;
  assert.equal(w.get('resourceVersion'), String(fake.rv));
  assert.equal(w.get('allowWatchBookmarks'), 'true');
  assert.ok(Number(w.get('timeoutSeconds')) >= 60);
  fake.service('f');
  fake.service('a', 8080);
  fake.remove('b');
  await until('the watch events', () => rec.names().join() === 'a,c,d,e,f' && rec.objects.get('a')!.kind === 'Service');
  const a = rec.objects.get('a')!;
  assert.equal(a.kind === 'Service' && a.spec.ports[0]!.port, 8080);
  assert.equal(a.origin.source, 'api');
});

test('a closed watch resumes from the last resourceVersion; a stalled one is dropped by the watchdog and restarted', async (t) => {
  const { fake, source, rec, restarts } = await setup(t, { idleMs: 400 });
  fake.service('a');
  await source.start();
  await until('a watch', () => fake.watchRequests.length === 1);
  fake.service('b');
  await until('b', () => rec.objects.has('b'));
  const rvAfterB = String(fake.rv);
  fake.closeWatches();
  await until('a second watch', () => fake.watchRequests.length === 2);
  assert.equal(fake.watchRequests[1]!.get('resourceVersion'), rvAfterB, 'resumed where it was, no relist');
  assert.equal(fake.listRequests.length, 1);

  fake.mode = 'stall';
  fake.closeWatches();
  fake.service('c'); // happens while every stream is silent
  await until('a watch after the stall', () => fake.watchRequests.length >= 4, 10_000);
  assert.ok(!rec.objects.has('c'), 'nothing came through the stalled stream');
  fake.mode = 'ok';
  await until('c through a fresh watch', () => rec.objects.has('c'), 10_000);
  assert.ok(source.stats()[0]!.restarts >= 1, 'the stall is counted as a restart');
  assert.match(source.stats()[0]!.lastError, /stalled/);
  assert.ok(restarts.includes('Service/stalled'), `restarts reported for metrics: ${restarts.join(', ')}`);
});

test('410 Gone after compaction: a relist, with the objects that vanished meanwhile reported as deletes', async (t) => {
  const { fake, source, rec, logs, restarts } = await setup(t);
  for (const n of ['a', 'b', 'c']) fake.service(n);
  await source.start();
  await until('a watch', () => fake.watchRequests.length === 1);
  // The server loses its history and, while no stream is open, b goes and d comes.
  fake.closeWatches();
  fake.mode = 'stall';
  fake.remove('b');
  fake.service('d');
  fake.events = [];
  fake.compactedTo = fake.rv;
  fake.mode = 'ok';
  await until('the relist', () => rec.names().join() === 'a,c,d');
  assert.equal(fake.listRequests.length, 2);
  assert.equal(source.stats()[0]!.relists, 1);
  assert.ok(rec.changes.some((c) => c.previous?.metadata.name === 'b' && c.current === undefined), 'b reported deleted');
  assert.ok(logs.some((l) => /410/.test(l)));
  assert.ok(restarts.includes('Service/gone'));
  // And the watch carries on from the relist's version.
  fake.service('e');
  await until('e', () => rec.objects.has('e'));
});

test('an unreachable server: the last objects stay, watches retry with back-off, and it recovers by itself', async (t) => {
  const { fake, source, rec, reachable } = await setup(t);
  fake.service('a');
  await source.start();
  await until('a watch', () => fake.watchRequests.length === 1);
  const port = fake.port;
  await fake.close();
  await new Promise((r) => setTimeout(r, 1500));
  assert.deepEqual(rec.names(), ['a'], 'the last good objects stay while the server is away');
  assert.ok(source.stats()[0]!.restarts >= 1);
  // Back on the same port, with a change made while it was away.
  const revived = new FakeApi();
  revived.rv = fake.rv;
  revived.objects = fake.objects;
  revived.events = fake.events;
  revived.service('b');
  await revived.listen(port);
  t.after(() => revived.close());
  await until('b after the server came back', () => rec.objects.has('b'), 40_000);
  assert.deepEqual(rec.names(), ['a', 'b']);
  // Told once when it went away and once when a watch was accepted again (healthz's input).
  assert.deepEqual(reachable, [false, true]);
});

test('an object Tapir cannot use is reported and its last good version stays; a fixed one clears the report', async (t) => {
  const { fake, source, rec } = await setup(t);
  fake.service('a');
  await source.start();
  await until('a watch', () => fake.watchRequests.length === 1);
  fake.service('a', 70000);
  await until('the problem', () => rec.problems.size === 1);
  const [input, problems] = [...rec.problems][0]!;
  assert.match(input, /Service default\/a$/);
  assert.match(problems.join(), /70000/);
  const a = rec.objects.get('a')!;
  assert.equal(a.kind === 'Service' && a.spec.ports[0]!.port, 80, 'the last good version stays');
  fake.service('a', 81);
  await until('the fix', () => rec.problems.size === 0);
  const fixed = rec.objects.get('a')!;
  assert.equal(fixed.kind === 'Service' && fixed.spec.ports[0]!.port, 81);
});

test('403 on the first list fails start() loudly, naming the resource', async (t) => {
  const { fake, source } = await setup(t);
  fake.mode = 'forbidden';
  await assert.rejects(source.start(), (err: Error) => err instanceof KubernetesSourceError && /cannot list services/.test(err.message) && /forbidden/.test(err.message));
});

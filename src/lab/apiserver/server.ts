// The lab's Kubernetes API server: a TEST DOUBLE, not a product. It serves the part of
// the Kubernetes API that Tapir's agents, the lab and a real kubectl use (discovery,
// the kinds in resources.ts, their verbs and watches), over HTTPS with bearer tokens and
// RBAC, so that the cluster code path runs in the lab exactly as against a cluster,
// including its failures (403 for a missing RBAC rule, 410 for a compacted watch).
// State lives in memory with a journal on disk (store.ts). See docs/lab-apiserver.md.
//
// This file: listening (host:port or an inherited listening fd, so that one process in
// the lab's namespace can also serve a loopback port of the host), bootstrap objects,
// authentication, dispatch to the verbs, discovery, and the fault injection endpoint;
// routes.ts parses requests.
import { mkdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { isMapping, type Raw } from '../../config/fields.ts';
import type { PortRange, ServiceCidrs } from '../../model/cluster-defaults.ts';
import type { Cidr } from '../../wire/address.ts';
import { EndpointSliceController, Scheduler } from './controllers.ts';
import { ServiceAllocator } from './defaults.ts';
import { AGGREGATED_DISCOVERY_TYPE, aggregatedDiscovery, apiGroup, coreVersions, groupList, resourceList, versionInfo } from './discovery.ts';
import { openApiDocument, openApiIndex } from './openapi.ts';
import { mediaType, parseResourcePath, readBody, sendJson, tableRequested } from './routes.ts';
import { ObjectHandlers, type ResourceRequest } from './handlers.ts';
import { forbiddenMessage, RbacAuthorizer, readTokenFile, type RequestAttributes, type UserInfo } from './rbac.ts';
import { apiVersionOf, resourceAt, resourceKey, resourceOfKind } from './resources.ts';
import { ApiError, LabApiServerError } from './status.ts';
import { Store } from './store.ts';
import { toTable } from './table.ts';
import { ensureCertificates, type TlsFiles } from './tls.ts';
import { serveWatch } from './watch.ts';

/** Where to listen: an address, or a listening socket a parent process opened and passed down. */
export type Listener = { host: string; port: number } | { fd: number };

export interface ApiServerOptions {
  /** State directory: journal.jsonl and the TLS files in tls/. */
  dir: string;
  /** kube-apiserver --token-auth-file format (rbac.ts). */
  tokenFile: string;
  /** An IPv4-only cluster's service CIDR; `serviceCIDRs` (one per family, primary first) wins when given. */
  serviceCIDR?: Cidr;
  serviceCIDRs?: ServiceCidrs;
  nodePortRange: Readonly<PortRange>;
  listeners: readonly Listener[];
  /** Extra names and addresses for the serving certificate (the addresses agents dial). */
  certificateNames?: readonly string[];
  /** YAML files whose objects are created at start when absent (deploy/kubernetes/rbac.yaml). */
  bootstrapFiles?: readonly string[];
  /** How often watches that allow bookmarks get one; default 10 s. */
  bookmarkIntervalMs?: number;
  /**
   * The address and port clients inside the cluster reach the server on: kept in the
   * `kubernetes` Service's endpoints in `default`, as kube-apiserver keeps them.
   */
  advertise?: { address: string; port: number };
  /** Runs the EndpointSlice controller and the scheduler (controllers.ts), as kube-controller-manager and kube-scheduler would. */
  controllers?: boolean;
}

/** The fault injection endpoint's operations (POST /tapir-lab/faults/<name>, system:masters only). */
export const FAULTS = ['close-watches', 'expire-next-watch', 'stall-watches', 'compact', 'refuse'] as const;

/** The namespaces every cluster has. */
const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];


export class LabApiServer {
  readonly store: Store;
  readonly handlers: ObjectHandlers;
  private readonly allocator: ServiceAllocator;
  readonly tls: TlsFiles;
  private readonly tokens: Map<string, UserInfo>;
  private readonly rbac: RbacAuthorizer;
  private readonly servers: Server[] = [];
  private readonly options: ApiServerOptions;
  private readonly controllers: { stop(): void }[] = [];
  private expireCount = 0;
  private refuseUntil = 0;
  /** The address of each listener the server opened itself (undefined: an inherited fd). */
  private readonly ownListeners = new Map<Server, { host: string; port: number } | undefined>();
  private relisten: NodeJS.Timeout | undefined;

  constructor(options: ApiServerOptions) {
    this.options = options;
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    this.store = new Store(join(options.dir, 'journal.jsonl'));
    const cidrs = options.serviceCIDRs ?? options.serviceCIDR;
    if (cidrs === undefined) throw new LabApiServerError('the lab API server needs a service CIDR');
    this.allocator = new ServiceAllocator(cidrs, options.nodePortRange);
    this.handlers = new ObjectHandlers(this.store, this.allocator);
    this.tokens = readTokenFile(options.tokenFile);
    this.rbac = new RbacAuthorizer(this.store);
    const names = [...(options.certificateNames ?? [])];
    for (const l of options.listeners) if ('host' in l) names.push(l.host);
    // The `kubernetes` Service's cluster IP, which in-cluster clients dial.
    names.push(this.allocator.apiServiceIP);
    this.tls = ensureCertificates(join(options.dir, 'tls'), names.filter((n) => n !== '' && n !== '0.0.0.0'));
    this.bootstrap();
    if (options.controllers === true) this.controllers.push(new EndpointSliceController(this.handlers), new Scheduler(this.handlers));
  }

  /** Starts every listener; resolves with their addresses. */
  async start(): Promise<AddressInfo[]> {
    const cert = readFileSync(this.tls.cert);
    const key = readFileSync(this.tls.key);
    const out: AddressInfo[] = [];
    for (const l of this.options.listeners) {
      const server = createServer({ cert, key }, (req, res) => void this.serve(req, res));
      server.on('connection', (socket: Socket) => {
        if (Date.now() < this.refuseUntil) socket.destroy();
      });
      // Watches stay open for as long as clients want; Node's 5 min request timeout would cut them.
      server.requestTimeout = 0;
      server.headersTimeout = 60_000;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen('fd' in l ? { fd: l.fd } : { host: l.host, port: l.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      this.servers.push(server);
      this.ownListeners.set(server, 'fd' in l ? undefined : { host: l.host, port: (server.address() as AddressInfo).port });
      out.push(server.address() as AddressInfo);
    }
    return out;
  }

  async close(): Promise<void> {
    clearTimeout(this.relisten);
    for (const c of this.controllers) c.stop();
    this.store.closeWatches();
    this.handlers.close();
    this.store.close();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    })));
  }

  /** Fault injection, also reachable over HTTPS (see FAULTS). Returns what it did. */
  fault(name: string, seconds = 0, count = 1): Raw {
    switch (name) {
      case 'close-watches': return { closed: this.store.closeWatches() };
      case 'stall-watches': return { stalled: this.store.stallWatches() };
      case 'expire-next-watch': this.expireCount += count; return { pending: this.expireCount };
      case 'compact': this.store.compact(); return { compactedTo: this.store.oldestResumableRV };
      case 'refuse':
        this.refuseUntil = Date.now() + seconds * 1000;
        this.store.closeWatches();
        // Listeners stop now, before this answer goes out: a client that connects again
        // as soon as it has read the answer must meet a closed port, not a listener
        // still open that resets the connection when it closes. The connections are cut
        // after the answer has gone out (the one carrying it is one of them).
        this.refuse(seconds);
        setImmediate(() => { for (const s of this.servers) s.closeAllConnections(); });
        return { refusingUntil: new Date(this.refuseUntil).toISOString() };
      default: throw ApiError.badRequest(`unknown fault ${JSON.stringify(name)} (one of ${FAULTS.join(', ')})`);
    }
  }

  /**
   * The listeners the server opened itself stop listening, so clients get "connection
   * refused" as from a server that is down, and listen again after `seconds`; an
   * inherited socket cannot be reopened, so it stays and resets every new connection
   * until then (the caller cuts the existing connections).
   */
  private refuse(seconds: number): void {
    for (const s of this.servers) {
      if (this.ownListeners.get(s) !== undefined) s.close();
    }
    clearTimeout(this.relisten);
    this.relisten = setTimeout(() => {
      for (const [s, address] of this.ownListeners) {
        if (address === undefined || s.listening) continue;
        s.once('error', (err) => process.stderr.write(`tapir lab apiserver: cannot listen on ${address.host}:${address.port} again: ${err.message}\n`));
        s.listen({ host: address.host, port: address.port });
      }
    }, seconds * 1000);
  }

  /** Creates what every cluster has and the objects of the bootstrap files that are not there yet. */
  private bootstrap(): void {
    for (const ns of SYSTEM_NAMESPACES) this.createIfAbsent({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }, `namespace ${ns}`);
    if (this.options.advertise !== undefined) this.advertise(this.options.advertise.address, this.options.advertise.port);
    for (const file of this.options.bootstrapFiles ?? []) {
      parseAllDocuments(readFileSync(file, 'utf8')).forEach((doc, i) => {
        if (doc.errors.length > 0) throw new LabApiServerError(`${file}: document ${i + 1}: ${doc.errors[0]!.message}`);
        const obj: unknown = doc.toJS();
        if (obj !== null && obj !== undefined) this.createIfAbsent(obj, `${file}: document ${i + 1}`);
      });
    }
  }

  /**
   * The `kubernetes` Service (the service CIDR's first address, port 443) and its
   * Endpoints and EndpointSlice pointing at `address:port`, rewritten when they differ.
   */
  private advertise(address: string, port: number): void {
    const clusterIP = this.allocator.apiServiceIP;
    this.createIfAbsent({
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: 'kubernetes', namespace: 'default', labels: { component: 'apiserver', provider: 'kubernetes' } },
      spec: { clusterIP, ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: port }], sessionAffinity: 'None', type: 'ClusterIP' },
    }, 'the kubernetes Service');
    const endpoints: Raw[] = [
      { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'kubernetes', namespace: 'default', labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' } }, subsets: [{ addresses: [{ ip: address }], ports: [{ name: 'https', port, protocol: 'TCP' }] }] },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'kubernetes', namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } }, addressType: address.includes(':') ? 'IPv6' : 'IPv4', endpoints: [{ addresses: [address], conditions: { ready: true } }], ports: [{ name: 'https', port, protocol: 'TCP' }] },
    ];
    for (const obj of endpoints) {
      const info = resourceOfKind(String(obj.apiVersion), String(obj.kind))!;
      const existing = this.store.get(resourceKey(info), 'default', 'kubernetes');
      if (existing === undefined) this.createIfAbsent(obj, 'the kubernetes Service\'s endpoints');
      else this.handlers.update({ info, namespace: 'default', name: 'kubernetes', subresource: '', query: new URLSearchParams() }, { ...obj, metadata: { ...(obj.metadata as Raw), resourceVersion: existing.metadata.resourceVersion } });
    }
  }

  private createIfAbsent(obj: unknown, where: string): void {
    const raw = isMapping(obj) ? obj : {};
    const info = resourceOfKind(String(raw.apiVersion), String(raw.kind));
    if (info === undefined) throw new LabApiServerError(`${where}: ${String(raw.apiVersion)} ${String(raw.kind)} is not served by the lab API server`);
    const meta = isMapping(raw.metadata) ? raw.metadata : {};
    const namespace = info.namespaced ? String(meta.namespace ?? 'default') : '';
    if (this.store.get(resourceKey(info), namespace, String(meta.name)) !== undefined) return;
    try {
      this.handlers.create({ info, namespace, name: '', subresource: '', query: new URLSearchParams() }, raw);
    } catch (err) {
      throw new LabApiServerError(`${where}: ${(err as Error).message}`);
    }
  }

  private authenticate(req: IncomingMessage): UserInfo | undefined {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    return m === null ? undefined : this.tokens.get(m[1]!);
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'https://lab');
      const path = url.pathname.replace(/\/+$/, '') || '/';
      const user = this.authenticate(req);
      if (user === undefined) {
        // As kube-apiserver with anonymous auth: only the health and version endpoints are public.
        if (req.method === 'GET' && ['/healthz', '/livez', '/readyz', '/version'].includes(path)) return this.serveNonResource(req, res, path);
        throw new ApiError('Unauthorized', 'Unauthorized');
      }
      if (path.startsWith('/tapir-lab/faults/')) {
        if (!user.groups.includes('system:masters')) throw new ApiError('Forbidden', forbiddenMessage(user, { verb: 'create', path }));
        const name = path.slice('/tapir-lab/faults/'.length);
        return sendJson(res, 200, this.fault(name, Number(url.searchParams.get('seconds') ?? '0'), Number(url.searchParams.get('count') ?? '1')));
      }
      const route = parseResourcePath(path, req.method ?? 'GET', url.searchParams);
      if (route === undefined) {
        this.authorize(user, { verb: 'get', path });
        return this.serveNonResource(req, res, path);
      }
      this.authorize(user, {
        verb: route.verb,
        resource: { group: route.group, resource: route.resource, subresource: route.subresource, name: route.name, namespace: route.resource === 'namespaces' ? route.name : route.namespace },
      });
      const body = ['POST', 'PUT', 'PATCH', 'DELETE'].includes(req.method ?? '') ? await readBody(req) : undefined;
      if (route.group === 'authorization.k8s.io' && route.resource === 'selfsubjectaccessreviews' && route.verb === 'create') return sendJson(res, 201, this.accessReview(user, body));
      if (route.group === 'authentication.k8s.io' && route.resource === 'selfsubjectreviews' && route.verb === 'create') {
        return sendJson(res, 201, { kind: 'SelfSubjectReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, status: { userInfo: { username: user.name, uid: user.uid, groups: user.groups } } });
      }
      const info = resourceAt(route.group, route.version, route.resource);
      if (info === undefined) throw new ApiError('NotFound', 'the server could not find the requested resource');
      // A namespaced object needs its namespace in the path, a cluster-scoped one must not have one.
      if (info.namespaced ? route.namespace === '' && (route.name !== '' || route.verb === 'create') : route.namespace !== '') throw new ApiError('NotFound', 'the server could not find the requested resource');
      if (route.subresource !== '' && !info.subresources.includes(route.subresource)) throw new ApiError('NotFound', 'the server could not find the requested resource');
      const request: ResourceRequest = { info, namespace: info.namespaced ? route.namespace : '', name: route.name, subresource: route.subresource, query: url.searchParams };
      const table = tableRequested(req.headers.accept ?? '') ? (url.searchParams.get('includeObject') ?? 'Metadata') as 'Metadata' | 'Object' | 'None' : '';
      switch (route.verb) {
        case 'get': {
          const obj = this.handlers.get(request);
          return sendJson(res, 200, table === '' ? obj : toTable(resourceKey(info), [obj], String(obj.metadata.resourceVersion), table));
        }
        case 'list': {
          const page = this.handlers.list(request);
          if (table !== '') {
            const t = toTable(resourceKey(info), page.items, page.resourceVersion, table);
            if (page.continueToken !== '') (t.metadata as Raw).continue = page.continueToken;
            return sendJson(res, 200, t);
          }
          const metadata: Raw = { resourceVersion: page.resourceVersion };
          if (page.continueToken !== '') { metadata.continue = page.continueToken; metadata.remainingItemCount = page.remaining; }
          return sendJson(res, 200, { kind: `${info.kind}List`, apiVersion: apiVersionOf(info), metadata, items: page.items });
        }
        case 'watch': {
          let expire = false;
          if (this.expireCount > 0) { this.expireCount--; expire = true; }
          return serveWatch(this.handlers, request, res, { bookmarkIntervalMs: this.options.bookmarkIntervalMs ?? 10_000, expireNext: () => expire, table });
        }
        case 'create': {
          return sendJson(res, 201, this.handlers.create(request, body));
        }
        case 'update': return sendJson(res, 200, this.handlers.update(request, body));
        case 'patch': return sendJson(res, 200, this.handlers.patch(request, mediaType(req.headers['content-type'] ?? ''), body));
        case 'delete': return sendJson(res, 200, this.handlers.delete(request, body));
        case 'deletecollection': {
          const items = this.handlers.deleteCollection(request, body);
          return sendJson(res, 200, { kind: `${info.kind}List`, apiVersion: apiVersionOf(info), metadata: { resourceVersion: String(this.store.resourceVersion) }, items });
        }
        default: throw ApiError.methodNotAllowed();
      }
    } catch (err) {
      const apiError = err instanceof ApiError ? err : new ApiError('InternalError', `Internal error occurred: ${(err as Error).message}`);
      if (!(err instanceof ApiError)) process.stderr.write(`tapir lab apiserver: ${req.method} ${req.url}: ${(err as Error).stack}\n`);
      if (res.headersSent) res.end();
      else sendJson(res, apiError.httpStatus, apiError.toStatus());
    }
  }

  private authorize(user: UserInfo, attrs: RequestAttributes): void {
    if (!this.rbac.allowed(user, attrs)) throw new ApiError('Forbidden', forbiddenMessage(user, attrs), attrs.resource === undefined ? {} : { name: attrs.resource.name || undefined, group: attrs.resource.group, kind: attrs.resource.resource });
  }

  private accessReview(user: UserInfo, body: unknown): Raw {
    const spec = isMapping(body) && isMapping(body.spec) ? body.spec : {};
    let attrs: RequestAttributes;
    if (isMapping(spec.resourceAttributes)) {
      const r = spec.resourceAttributes;
      attrs = { verb: String(r.verb ?? ''), resource: { group: String(r.group ?? ''), resource: String(r.resource ?? ''), subresource: String(r.subresource ?? ''), name: String(r.name ?? ''), namespace: String(r.namespace ?? '') } };
    } else {
      const n = isMapping(spec.nonResourceAttributes) ? spec.nonResourceAttributes : {};
      attrs = { verb: String(n.verb ?? ''), path: String(n.path ?? '') };
    }
    const allowed = this.rbac.allowed(user, attrs);
    return { kind: 'SelfSubjectAccessReview', apiVersion: 'authorization.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status: allowed ? { allowed, reason: 'RBAC: allowed by the lab API server' } : { allowed } };
  }

  private serveNonResource(req: IncomingMessage, res: ServerResponse, path: string): void {
    const accept = req.headers.accept ?? '';
    const aggregated = accept.includes('as=APIGroupDiscoveryList') && accept.includes('v=v2');
    if (path === '/healthz' || path === '/livez' || path === '/readyz') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('ok');
      return;
    }
    if (path === '/version') return sendJson(res, 200, versionInfo());
    if (path === '/openapi/v3') return sendJson(res, 200, openApiIndex());
    if (path.startsWith('/openapi/v3/')) {
      const text = openApiDocument(path.slice('/openapi/v3/'.length));
      if (text === undefined) throw new ApiError('NotFound', 'the server could not find the requested resource');
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    if ((path === '/api' || path === '/apis') && aggregated) return sendJson(res, 200, aggregatedDiscovery(path === '/api'), AGGREGATED_DISCOVERY_TYPE);
    if (path === '/api') return sendJson(res, 200, coreVersions());
    if (path === '/apis') return sendJson(res, 200, groupList());
    const parts = path.split('/').slice(1);
    let doc: Raw | undefined;
    if (parts[0] === 'api' && parts.length === 2) doc = resourceList('', parts[1]!);
    else if (parts[0] === 'apis' && parts.length === 2) doc = apiGroup(parts[1]!);
    else if (parts[0] === 'apis' && parts.length === 3) doc = resourceList(parts[1]!, parts[2]!);
    if (doc === undefined) throw new ApiError('NotFound', 'the server could not find the requested resource');
    sendJson(res, 200, doc);
  }
}

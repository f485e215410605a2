// The HTTP side of talking to a Kubernetes API server: credentials and TLS as a pod or a
// kubeconfig gives them, requests with undici. Two calls: GET a JSON document, and a
// watch stream read line by line. Everything about lists, resource versions and
// restarts is the reflector's (reflector.ts); this file only moves bytes and says what
// went wrong.
//
// Credentials: the in-cluster files (service-account token, re-read as kubelet rotates
// it, and CA; KUBERNETES_SERVICE_HOST/PORT) and kubeconfigs with a token, a token file
// or a client certificate are read here. Anything else a kubeconfig can say (exec
// plugins, auth providers) goes to @kubernetes/client-node's KubeConfig, loaded only
// then: the library takes over a second to import, and an agent's restart is a gap in
// its node's traffic (docs/ARCHITECTURE.md, "Flows that outlive the agent").
import { readFileSync } from 'node:fs';
import { Agent, fetch, type Dispatcher } from 'undici';
import { parse as parseYaml } from 'yaml';
import { TapirError } from '../errors/tapir-error.ts';

/** A request failed: the server answered with an error status, or never answered. */
export class KubeApiError extends TapirError {
  readonly code = 'TAPIR_KUBE_API';
  /** The HTTP status; 0 when there was no answer (refused, reset, timed out); KUBE_CONFIG_ERROR when no request could be made. */
  readonly status: number;
  /** The Status object's reason ('Expired', 'Forbidden', ...) when the server sent one. */
  readonly reason: string;
  constructor(message: string, status: number, reason = '') {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

/** KubeApiError.status when the request could not even be made (credentials, TLS settings). */
export const KUBE_CONFIG_ERROR = -1;

/** How the agent reaches the API server: as a pod does (default), or from a kubeconfig file. */
export type KubeAuth = { inCluster: true } | { kubeconfig: string };

/** One event of a watch stream, as the server sent it. */
export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: Record<string, unknown>;
}

export interface WatchHandle {
  /** Ends the stream; `done` is called with null. */
  abort(): void;
}

/** Where the in-cluster credentials are (the service account's volume, as every pod has it). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** client-go re-reads a token file at most this often (bound tokens are rotated by the kubelet). */
const TOKEN_REREAD_MS = 60_000;

/** How requests are authenticated: headers for each request, and the TLS dispatcher. */
interface Credentials {
  server: string;
  dispatcher: Dispatcher | undefined;
  headers(): Promise<Record<string, string>>;
}

export class KubeApi {
  readonly server: string;
  readonly #credentials: Promise<Credentials>;

  constructor(auth: KubeAuth) {
    const fast = 'kubeconfig' in auth ? fromKubeconfig(auth.kubeconfig) : inCluster();
    this.server = fast.server;
    this.#credentials = fast.credentials ?? viaClientNode(auth);
  }

  async #request(path: string, signal: AbortSignal, write?: { method: string; body: string; contentType: string }): Promise<{ status: number; body: ReadableStream<Uint8Array> | null; text(): Promise<string> }> {
    let c: Credentials;
    let headers: Record<string, string>;
    try {
      c = await this.#credentials;
      headers = await c.headers();
    } catch (err) {
      // The credentials or TLS settings themselves are wrong: no retry will help.
      throw new KubeApiError(`${this.server}: ${(err as Error).message}`, KUBE_CONFIG_ERROR);
    }
    try {
      const response = await fetch(`${c.server}${path}`, {
        method: write?.method ?? 'GET',
        headers: { ...headers, accept: 'application/json', ...(write === undefined ? {} : { 'content-type': write.contentType }) },
        ...(write === undefined ? {} : { body: write.body }),
        ...(c.dispatcher === undefined ? {} : { dispatcher: c.dispatcher }),
        signal,
      });
      return { status: response.status, body: response.body as ReadableStream<Uint8Array> | null, text: () => response.text() };
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new KubeApiError(`${write?.method ?? 'GET'} ${this.server}${path}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, 0);
    }
  }

  /** GETs a JSON document; a KubeApiError for anything but 200. */
  async get(path: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const r = await this.#request(path, AbortSignal.timeout(timeoutMs));
    const text = await r.text();
    if (r.status !== 200) throw statusError(`GET ${path}`, r.status, text);
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new KubeApiError(`GET ${path}: the answer is not JSON`, r.status);
    }
  }

  /**
   * A write (a controller's status update, an Event): `body` as JSON with `contentType`
   * (application/merge-patch+json for a merge patch). Resolves with the answer on 2xx;
   * a KubeApiError otherwise.
   */
  async send(method: 'POST' | 'PUT' | 'PATCH', path: string, body: unknown, contentType = 'application/json', timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const r = await this.#request(path, AbortSignal.timeout(timeoutMs), { method, body: JSON.stringify(body), contentType });
    const text = await r.text();
    if (r.status < 200 || r.status > 299) throw statusError(`${method} ${path}`, r.status, text);
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      return {};
    }
  }

  /**
   * Opens a watch (`path` with its query, `watch=1` added here) and calls `onEvent` per
   * line. `done` is called once: null when the server ended the stream or abort() was
   * called, else the error (a KubeApiError for an error status; a timeout when no byte
   * arrived for `idleMs`: a stalled watch).
   */
  /** `onOpen`: the server accepted the watch (200), before any event. */
  watch(path: string, idleMs: number, onEvent: (e: WatchEvent) => void, done: (err: Error | null) => void, onOpen?: () => void): WatchHandle {
    const controller = new AbortController();
    let finished = false;
    let idle: NodeJS.Timeout | undefined;
    const finish = (err: Error | null): void => {
      if (finished) return;
      finished = true;
      clearTimeout(idle);
      controller.abort();
      done(err);
    };
    const arm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => finish(new KubeApiError(`watch ${path}: nothing for ${idleMs / 1000} s (stalled)`, 0, 'Stalled')), idleMs);
      idle.unref();
    };
    const sep = path.includes('?') ? '&' : '?';
    arm();
    void (async () => {
      const r = await this.#request(`${path}${sep}watch=1`, controller.signal);
      if (r.status !== 200) throw statusError(`watch ${path}`, r.status, await r.text());
      onOpen?.();
      if (r.body === null) return;
      const decoder = new TextDecoder();
      let pending = '';
      for await (const chunk of r.body) {
        arm();
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (line === '') continue;
          let event: WatchEvent;
          try {
            event = JSON.parse(line) as WatchEvent;
          } catch {
            throw new KubeApiError(`watch ${path}: a line that is not JSON`, 200);
          }
          if (finished) return;
          onEvent(event);
        }
      }
    })().then(() => finish(null), (err: Error) => finish(controller.signal.aborted && finished ? null : err instanceof KubeApiError ? err : new KubeApiError(`watch ${path}: ${err.message}`, 0)));
    return { abort: () => finish(null) };
  }
}

function statusError(what: string, status: number, text: string): KubeApiError {
  let message = text.slice(0, 200);
  let reason = '';
  try {
    const s = JSON.parse(text) as { message?: string; reason?: string };
    message = s.message ?? message;
    reason = s.reason ?? '';
  } catch { /* not a Status */ }
  return new KubeApiError(`${what}: ${status} ${reason === '' ? '' : `${reason}: `}${message}`, status, reason);
}

/** A token read from a file, again at most once a minute (rotation). */
function tokenFile(file: string): () => Promise<Record<string, string>> {
  let token = '';
  let readAt = -Infinity;
  return async () => {
    if (performance.now() - readAt > TOKEN_REREAD_MS) {
      token = readFileSync(file, 'utf8').trim();
      readAt = performance.now();
    }
    return { authorization: `Bearer ${token}` };
  };
}

function tlsDispatcher(server: string, tls: { ca?: string | Buffer | undefined; cert?: string | Buffer | undefined; key?: string | Buffer | undefined; insecure?: boolean }): Dispatcher | undefined {
  if (!server.startsWith('https:')) return undefined;
  return new Agent({ connect: { ...(tls.ca === undefined ? {} : { ca: tls.ca }), ...(tls.cert === undefined ? {} : { cert: tls.cert }), ...(tls.key === undefined ? {} : { key: tls.key }), rejectUnauthorized: tls.insecure !== true } });
}

/** A pod's view of its cluster: KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA. */
function inCluster(): { server: string; credentials: Promise<Credentials> } {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (host === undefined || host === '' || port === undefined || port === '') {
    throw new KubeApiError('in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (is this a pod? else give --kubeconfig)', KUBE_CONFIG_ERROR);
  }
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let ca: Buffer;
  try {
    ca = readFileSync(`${SERVICE_ACCOUNT_DIR}/ca.crt`);
  } catch (err) {
    throw new KubeApiError(`in-cluster configuration: ${(err as Error).message}`, KUBE_CONFIG_ERROR);
  }
  const headers = tokenFile(`${SERVICE_ACCOUNT_DIR}/token`);
  return { server, credentials: Promise.resolve({ server, dispatcher: tlsDispatcher(server, { ca }), headers }) };
}

interface KubeconfigFile {
  'current-context'?: string;
  clusters?: { name: string; cluster?: Record<string, unknown> }[];
  users?: { name: string; user?: Record<string, unknown> }[];
  contexts?: { name: string; context?: { cluster?: string; user?: string } }[];
}

/**
 * The current context of a kubeconfig. `credentials` is undefined when its user needs
 * more than this reads (an exec plugin, an auth provider): client-node then does it.
 */
function fromKubeconfig(file: string): { server: string; credentials?: Promise<Credentials> } {
  let doc: KubeconfigFile;
  try {
    doc = (parseYaml(readFileSync(file, 'utf8')) ?? {}) as KubeconfigFile;
  } catch (err) {
    throw new KubeApiError(`kubeconfig ${file}: ${(err as Error).message}`, KUBE_CONFIG_ERROR);
  }
  const context = doc.contexts?.find((c) => c.name === doc['current-context'])?.context;
  const cluster = doc.clusters?.find((c) => c.name === context?.cluster)?.cluster;
  const server = typeof cluster?.server === 'string' ? cluster.server.replace(/\/+$/, '') : '';
  if (context === undefined || cluster === undefined || server === '') {
    throw new KubeApiError(`kubeconfig ${file}: no current context with a cluster and its server`, KUBE_CONFIG_ERROR);
  }
  const user = doc.users?.find((u) => u.name === context.user)?.user ?? {};
  const known = new Set(['token', 'tokenFile', 'client-certificate', 'client-certificate-data', 'client-key', 'client-key-data']);
  if (Object.keys(user).some((k) => !known.has(k))) return { server };
  const str = (o: Record<string, unknown>, k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
  const data = (o: Record<string, unknown>, k: string): string | Buffer | undefined => {
    const inline = str(o, `${k}-data`);
    if (inline !== undefined) return Buffer.from(inline, 'base64');
    const path = str(o, k);
    return path === undefined ? undefined : readFileSync(path);
  };
  try {
    const dispatcher = tlsDispatcher(server, {
      ca: data(cluster, 'certificate-authority'), cert: data(user, 'client-certificate'), key: data(user, 'client-key'),
      insecure: cluster['insecure-skip-tls-verify'] === true,
    });
    const token = str(user, 'token');
    const tokenPath = str(user, 'tokenFile');
    const fixed: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
    const headers = tokenPath !== undefined ? tokenFile(tokenPath) : async (): Promise<Record<string, string>> => fixed;
    return { server, credentials: Promise.resolve({ server, dispatcher, headers }) };
  } catch (err) {
    throw new KubeApiError(`kubeconfig ${file}: ${(err as Error).message}`, KUBE_CONFIG_ERROR);
  }
}

/** Everything else a kubeconfig can hold, by the maintained client (loaded only for it). */
async function viaClientNode(auth: KubeAuth): Promise<Credentials> {
  const { HttpMethod, KubeConfig, RequestContext } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if ('kubeconfig' in auth) kc.loadFromFile(auth.kubeconfig);
  else kc.loadFromCluster();
  const server = kc.getCurrentCluster()?.server.replace(/\/+$/, '') ?? '';
  let dispatcher: Dispatcher | undefined;
  return {
    server,
    get dispatcher() { return dispatcher; },
    async headers() {
      const ctx = new RequestContext(`${server}/`, HttpMethod.GET);
      await kc.applySecurityAuthentication(ctx);
      dispatcher = ctx.getDispatcher() as Dispatcher | undefined;
      return ctx.getHeaders();
    },
  };
}

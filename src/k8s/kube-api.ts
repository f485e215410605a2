// The HTTP side of talking to a Kubernetes API server: credentials and TLS from
// @kubernetes/client-node's KubeConfig (in-cluster service-account files, or a
// kubeconfig), requests with undici. Two calls: GET a JSON document, and a watch stream
// read line by line. Everything about lists, resource versions and restarts is the
// reflector's (api-source.ts); this file only moves bytes and says what went wrong.
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { fetch, type Dispatcher } from 'undici';
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

export class KubeApi {
  readonly server: string;
  readonly #config: KubeConfig;

  constructor(auth: KubeAuth) {
    const kc = new KubeConfig();
    if ('kubeconfig' in auth) kc.loadFromFile(auth.kubeconfig);
    else kc.loadFromCluster();
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new KubeApiError('the kubeconfig names no current cluster', 0);
    this.server = cluster.server.replace(/\/+$/, '');
    this.#config = kc;
  }

  async #request(path: string, signal: AbortSignal): Promise<{ status: number; body: ReadableStream<Uint8Array> | null; text(): Promise<string> }> {
    const ctx = new RequestContext(`${this.server}${path}`, HttpMethod.GET);
    try {
      await this.#config.applySecurityAuthentication(ctx);
    } catch (err) {
      // The credentials or TLS settings themselves are wrong: no retry will help.
      throw new KubeApiError(`${this.server}: ${(err as Error).message}`, KUBE_CONFIG_ERROR);
    }
    try {
      const response = await fetch(ctx.getUrl(), {
        method: 'GET',
        headers: { ...ctx.getHeaders(), accept: 'application/json' },
        dispatcher: ctx.getDispatcher() as Dispatcher | undefined,
        signal,
      });
      return { status: response.status, body: response.body as ReadableStream<Uint8Array> | null, text: () => response.text() };
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new KubeApiError(`GET ${this.server}${path}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, 0);
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

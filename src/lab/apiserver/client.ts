// A small client of the lab API server for the lab's own use (its controllers, scheduler
// and kubelet stand-ins, fault injection, `lab apply`): JSON over HTTPS with the lab's
// CA and a bearer token, object paths from the resource table. Tapir's agents do not use
// it: they talk to the API through @kubernetes/client-node, as in a cluster.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { isMapping, type Raw } from '../../config/fields.ts';
import { apiVersionOf, resourceOfKind, type ResourceInfo } from './resources.ts';
import { LabApiServerError } from './status.ts';

export interface ApiResponse {
  status: number;
  body: Raw;
}

export class LabApiClient {
  readonly server: string;
  private readonly token: string;
  /**
   * Keep-alive connections: `lab apply` of 1,000 Services and their slices is 4,000
   * requests, and a TLS handshake each (and the CA parsed each time) was most of the
   * 26-40 s it took.
   */
  private readonly agent: Agent;

  /** `server`: https://HOST:PORT; `caFile`: the lab's ca.crt; `token`: a bearer token. */
  constructor(server: string, caFile: string, token: string) {
    this.server = server;
    this.token = token;
    this.agent = new Agent({ keepAlive: true, ca: readFileSync(caFile) });
  }

  /** One request; resolves with any HTTP status (callers decide what is an error). */
  async request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiResponse> {
    return await this.send(method, path, body === undefined ? undefined : JSON.stringify(body), contentType, true);
  }

  private send(method: string, path: string, text: string | undefined, contentType: string, mayRetry: boolean): Promise<ApiResponse> {
    return new Promise((resolve, reject) => {
      const req = request(new URL(path, this.server), { method, agent: this.agent, headers: { authorization: `Bearer ${this.token}`, 'content-type': contentType, accept: 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString();
          let parsed: unknown = {};
          try { parsed = raw === '' ? {} : JSON.parse(raw); } catch { parsed = { message: raw }; }
          resolve({ status: res.statusCode ?? 0, body: isMapping(parsed) ? parsed : { value: parsed } });
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        // The server may close an idle kept-alive connection just as a request goes out
        // on it: that request never reached the server, and goes again on a new one.
        if (mayRetry && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          this.send(method, path, text, contentType, false).then(resolve, reject);
          return;
        }
        reject(new LabApiServerError(`${method} ${this.server}${path}: ${err.message}`));
      });
      req.end(text);
    });
  }

  /** Closes the kept-alive connections (they never keep a process alive: idle ones are unreferenced). */
  close(): void {
    this.agent.destroy();
  }

  /** Like request, but a status outside 2xx is an error naming the server's message. */
  async must(method: string, path: string, body?: unknown, contentType?: string): Promise<Raw> {
    const res = await this.request(method, path, body, contentType);
    if (res.status < 200 || res.status > 299) throw new LabApiServerError(`${method} ${path}: ${res.status} ${String(res.body.message ?? JSON.stringify(res.body))}`);
    return res.body;
  }

  /** Creates `obj`; false when it exists already (409 AlreadyExists). */
  async create(obj: Raw): Promise<boolean> {
    const res = await this.request('POST', objectPath(obj, false), obj);
    if (res.status === 409 && res.body.reason === 'AlreadyExists') return false;
    if (res.status !== 201) throw new LabApiServerError(`creating ${describe(obj)}: ${res.status} ${String(res.body.message ?? '')}`);
    return true;
  }

  /** Server-side apply of `obj` (created when absent) as `fieldManager`. */
  async apply(obj: Raw, fieldManager: string): Promise<Raw> {
    return await this.must('PATCH', `${objectPath(obj, true)}?fieldManager=${encodeURIComponent(fieldManager)}&force=true`, obj, 'application/apply-patch+yaml');
  }

  /** Deletes `obj` (by apiVersion, kind, namespace, name); false when it was not there. */
  async delete(obj: Raw, gracePeriodSeconds?: number): Promise<boolean> {
    const query = gracePeriodSeconds === undefined ? '' : `?gracePeriodSeconds=${gracePeriodSeconds}`;
    const res = await this.request('DELETE', `${objectPath(obj, true)}${query}`);
    if (res.status === 404) return false;
    if (res.status !== 200) throw new LabApiServerError(`deleting ${describe(obj)}: ${res.status} ${String(res.body.message ?? '')}`);
    return true;
  }
}

function infoOf(obj: Raw): ResourceInfo {
  const info = resourceOfKind(String(obj.apiVersion), String(obj.kind));
  if (info === undefined) throw new LabApiServerError(`${describe(obj)}: ${String(obj.apiVersion)} ${String(obj.kind)} is not served by the lab API server`);
  return info;
}

/** The collection's path, or the object's own with `named`. */
export function objectPath(obj: Raw, named: boolean): string {
  const info = infoOf(obj);
  const meta = isMapping(obj.metadata) ? obj.metadata : {};
  const base = info.group === '' ? `/api/${info.version}` : `/apis/${apiVersionOf(info)}`;
  const ns = info.namespaced ? `/namespaces/${encodeURIComponent(String(meta.namespace ?? 'default'))}` : '';
  return `${base}${ns}/${info.resource}${named ? `/${encodeURIComponent(String(meta.name))}` : ''}`;
}

function describe(obj: Raw): string {
  const meta = isMapping(obj.metadata) ? obj.metadata : {};
  return `${String(obj.kind)} ${meta.namespace === undefined ? '' : `${String(meta.namespace)}/`}${String(meta.name)}`;
}

// Request parsing and responses of the lab API server: kube-apiserver's RequestInfo
// (which group, version, resource, namespace, name, subresource and verb a path and
// method mean), request bodies (JSON, YAML, the protobuf kubectl's typed clients send),
// and JSON answers.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { decodeProtobuf } from './protobuf.ts';
import { ApiError } from './status.ts';

const MAX_BODY_BYTES = 3 * 1024 * 1024;

export interface Route {
  group: string;
  version: string;
  resource: string;
  namespace: string;
  name: string;
  subresource: string;
  verb: string;
}

/** kube-apiserver's RequestInfo for /api/v1/... and /apis/<group>/<version>/...; undefined for other paths. */
export function parseResourcePath(path: string, method: string, query: URLSearchParams): Route | undefined {
  let parts: string[];
  try {
    parts = path.split('/').slice(1).map(decodeURIComponent);
  } catch {
    throw ApiError.badRequest(`malformed path ${JSON.stringify(path)}`);
  }
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 3) { group = ''; version = parts[1]!; rest = parts.slice(2); }
  else if (parts[0] === 'apis' && parts.length >= 4) { group = parts[1]!; version = parts[2]!; rest = parts.slice(3); }
  else return undefined;
  let watch = query.get('watch') === 'true' || query.get('watch') === '1';
  if (rest[0] === 'watch') { watch = true; rest = rest.slice(1); }
  let namespace = '';
  // /namespaces/<ns>/<resource>/... names a namespace; /namespaces/<name>[/status|/finalize] is the Namespace itself.
  if (rest[0] === 'namespaces' && rest.length > 1) {
    namespace = rest[1]!;
    if (rest.length > 2 && rest[2] !== 'status' && rest[2] !== 'finalize') rest = rest.slice(2);
  }
  const [resource = '', name = '', subresource = '', ...extra] = rest;
  if (extra.length > 0 || resource === '') return undefined;
  const collection = name === '';
  let verb: string;
  switch (method) {
    case 'GET': case 'HEAD': verb = watch ? 'watch' : collection ? 'list' : 'get'; break;
    case 'POST': verb = 'create'; break;
    case 'PUT': verb = 'update'; break;
    case 'PATCH': verb = 'patch'; break;
    case 'DELETE': verb = collection ? 'deletecollection' : 'delete'; break;
    default: verb = method.toLowerCase();
  }
  return { group, version, resource, namespace: resource === 'namespaces' ? '' : namespace, name, subresource, verb };
}

/** `kubectl get` asks for meta.k8s.io Tables first. */
export function tableRequested(accept: string): boolean {
  return accept.split(',').some((t) => t.includes('as=Table') && t.includes('g=meta.k8s.io'));
}

export function mediaType(contentType: string): string {
  return contentType.split(';')[0]!.trim().toLowerCase();
}

export async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ApiError('BadRequest', 'the request body is larger than 3 MiB');
    chunks.push(chunk as Buffer);
  }
  const type = mediaType(req.headers['content-type'] ?? 'application/json');
  if (type === 'application/vnd.kubernetes.protobuf') return decodeProtobuf(Buffer.concat(chunks));
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return type.includes('yaml') ? parseYaml(text) as unknown : JSON.parse(text) as unknown;
  } catch (err) {
    throw ApiError.badRequest(`the request body could not be decoded as ${type}: ${(err as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' });
  res.end(text);
}

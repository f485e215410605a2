// The Ingress annotations Tapir reads, with ingress-nginx's meaning: each in the
// `tapir.dev/` prefix, with `nginx.ingress.kubernetes.io/` accepted as an alias (the
// tapir.dev/ one wins when both are set), so an Ingress written for ingress-nginx moves
// over unchanged. Any other annotation in either prefix is reported as ignored (the
// controller logs each problem once); annotations of other prefixes are not ours to judge.
// https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/annotations/
import type { BackendProtocol } from './model.ts';

export const TAPIR_PREFIX = 'tapir.dev/';
export const NGINX_PREFIX = 'nginx.ingress.kubernetes.io/';

/** What an Ingress's annotations say; null = not set (the compile applies the default). */
export interface IngressAnnotations {
  sslRedirect: boolean | null;
  backendProtocol: BackendProtocol;
  /** affinity: cookie. `path` null = the rule's own path (ingress-nginx's default). */
  affinityCookie: { name: string; maxAgeSeconds: number; path: string | null } | null;
  proxyBodySize: number | null;
  proxyReadTimeoutMs: number | null;
  proxyConnectTimeoutMs: number | null;
  rewriteTarget: string | null;
  /** use-regex, or implied by rewrite-target (as in ingress-nginx). */
  useRegex: boolean;
  /** canary: "true": this Ingress's rules are canaries of the same host and path of another Ingress. */
  canary: { weight: number; header: { name: string; value: string | null } | null } | null;
}

const KNOWN = [
  'ssl-redirect', 'backend-protocol', 'affinity', 'session-cookie-name', 'session-cookie-max-age', 'session-cookie-path',
  'proxy-body-size', 'proxy-read-timeout', 'proxy-connect-timeout', 'rewrite-target', 'use-regex',
  'canary', 'canary-weight', 'canary-by-header', 'canary-by-header-value',
] as const;
type Known = (typeof KNOWN)[number];

const PROTOCOLS: readonly BackendProtocol[] = ['HTTP', 'HTTPS', 'GRPC'];
/** ingress-nginx's cookie name when session-cookie-name is not given. */
export const DEFAULT_AFFINITY_COOKIE = 'INGRESSCOOKIE';
/** nginx's size syntax: bytes, or k/m/g (KiB, MiB, GiB), as client_max_body_size takes it. */
const SIZE = /^(\d+)([kKmMgG]?)$/;
const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
/** HTTP header field names (RFC 9110 section 5.1: a token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Reads `annotations`; `report(field, message)` gets each problem with its field path
 * ("metadata.annotations[\"tapir.dev/proxy-body-size\"]"). A bad value is reported and
 * the default used instead.
 */
export function readAnnotations(annotations: Readonly<Record<string, string>>, report: (field: string, message: string) => void): IngressAnnotations {
  const values = new Map<Known, { value: string; key: string }>();
  for (const prefix of [NGINX_PREFIX, TAPIR_PREFIX]) {
    for (const [key, value] of Object.entries(annotations)) {
      if (!key.startsWith(prefix)) continue;
      const name = key.slice(prefix.length);
      if ((KNOWN as readonly string[]).includes(name)) values.set(name as Known, { value: value.trim(), key });
      else report(field(key), `is not supported by Tapir and is ignored (supported: ${KNOWN.join(', ')}, in ${TAPIR_PREFIX} or ${NGINX_PREFIX})`);
    }
  }
  const get = (name: Known): { value: string; key: string } | undefined => values.get(name);
  const bool = (name: Known): boolean | null => {
    const v = get(name);
    if (v === undefined) return null;
    if (v.value === 'true' || v.value === 'false') return v.value === 'true';
    report(field(v.key), `${JSON.stringify(v.value)} must be "true" or "false"`);
    return null;
  };
  const seconds = (name: Known): number | null => {
    const v = get(name);
    if (v === undefined) return null;
    const m = /^(\d+)s?$/.exec(v.value);
    if (m !== null && Number(m[1]) > 0 && Number(m[1]) <= 86_400) return Number(m[1]) * 1000;
    report(field(v.key), `${JSON.stringify(v.value)} must be a number of seconds from 1 to 86400 (such as "60")`);
    return null;
  };

  let backendProtocol: BackendProtocol = 'HTTP';
  const protocol = get('backend-protocol');
  if (protocol !== undefined) {
    const upper = protocol.value.toUpperCase();
    if ((PROTOCOLS as readonly string[]).includes(upper)) backendProtocol = upper as BackendProtocol;
    else report(field(protocol.key), `${JSON.stringify(protocol.value)} is not supported (use one of ${PROTOCOLS.join(', ')})`);
  }

  let affinityCookie: IngressAnnotations['affinityCookie'] = null;
  const affinity = get('affinity');
  if (affinity !== undefined) {
    if (affinity.value !== 'cookie') report(field(affinity.key), `${JSON.stringify(affinity.value)} is not supported (the only affinity is "cookie")`);
    else {
      const name = get('session-cookie-name');
      let cookieName = DEFAULT_AFFINITY_COOKIE;
      if (name !== undefined) {
        if (TOKEN.test(name.value)) cookieName = name.value;
        else report(field(name.key), `${JSON.stringify(name.value)} is not a valid cookie name`);
      }
      const maxAge = get('session-cookie-max-age');
      let maxAgeSeconds = 0;
      if (maxAge !== undefined) {
        if (/^\d+$/.test(maxAge.value)) maxAgeSeconds = Number(maxAge.value);
        else report(field(maxAge.key), `${JSON.stringify(maxAge.value)} must be a number of seconds`);
      }
      const path = get('session-cookie-path');
      let cookiePath: string | null = null;
      if (path !== undefined) {
        if (path.value.startsWith('/') && !/[;\s]/.test(path.value)) cookiePath = path.value;
        else report(field(path.key), `${JSON.stringify(path.value)} must be a path starting with "/" (no ";" or spaces)`);
      }
      affinityCookie = { name: cookieName, maxAgeSeconds, path: cookiePath };
    }
  }

  let proxyBodySize: number | null = null;
  const size = get('proxy-body-size');
  if (size !== undefined) {
    const m = SIZE.exec(size.value);
    if (m !== null) proxyBodySize = Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
    else report(field(size.key), `${JSON.stringify(size.value)} is not a size (bytes, or with k, m or g as in "8k", "1m"; "0" = unlimited)`);
  }

  const rewrite = get('rewrite-target');
  const rewriteTarget = rewrite === undefined || rewrite.value === '' ? null : rewrite.value;
  const useRegex = (bool('use-regex') ?? false) || rewriteTarget !== null;

  let canary: IngressAnnotations['canary'] = null;
  if (bool('canary') === true) {
    let weight = 0;
    const w = get('canary-weight');
    if (w !== undefined) {
      if (/^\d+$/.test(w.value) && Number(w.value) <= 100) weight = Number(w.value);
      else report(field(w.key), `${JSON.stringify(w.value)} must be a whole number from 0 to 100 (the percentage of requests for the canary)`);
    }
    let header: { name: string; value: string | null } | null = null;
    const h = get('canary-by-header');
    if (h !== undefined) {
      if (TOKEN.test(h.value)) header = { name: h.value.toLowerCase(), value: get('canary-by-header-value')?.value ?? null };
      else report(field(h.key), `${JSON.stringify(h.value)} is not a valid header name`);
    }
    canary = { weight, header };
  } else {
    for (const name of ['canary-weight', 'canary-by-header', 'canary-by-header-value'] as const) {
      const v = get(name);
      if (v !== undefined) report(field(v.key), `is ignored without ${TAPIR_PREFIX}canary: "true"`);
    }
  }

  return {
    sslRedirect: bool('ssl-redirect'),
    backendProtocol,
    affinityCookie,
    proxyBodySize,
    proxyReadTimeoutMs: seconds('proxy-read-timeout'),
    proxyConnectTimeoutMs: seconds('proxy-connect-timeout'),
    rewriteTarget,
    useRegex,
    canary,
  };
}

function field(key: string): string {
  return `metadata.annotations[${JSON.stringify(key)}]`;
}

// Builders of IngressConfig values for the router and proxy tests: what compile.ts would
// produce, written out by hand so that each test states exactly the routes it needs.
import type { Backend, BackendProtocol, Certificate, Endpoint, IngressConfig, PathRule, PathType, RouteOptions, VirtualHost } from '../../src/ingress/model.ts';

export function backend(name: string, endpoints: Endpoint[] = [], protocol: BackendProtocol = 'HTTP'): Backend {
  return { name, endpoints, protocol };
}

/** ingress-nginx's defaults (sslRedirect as for a TLS host). */
export function options(o: Partial<RouteOptions> = {}): RouteOptions {
  return {
    sslRedirect: true, affinityCookie: null, proxyBodySize: 1 << 20, proxyReadTimeoutMs: 60_000,
    proxyConnectTimeoutMs: 5_000, rewriteTarget: null, useRegex: false, ...o,
  };
}

export function rule(pathType: PathType, path: string, b: Backend, extra: Partial<Omit<PathRule, 'pathType' | 'path' | 'backend'>> = {}): PathRule {
  return { pathType, path, backend: b, options: extra.options ?? options(), canary: extra.canary ?? null, ingress: extra.ingress ?? 'default/test' };
}

export function vhost(host: string, paths: PathRule[], tls: string | null = null): VirtualHost {
  return { host, paths, tls };
}

export function config(hosts: VirtualHost[], extra: { generation?: number; defaultBackend?: Backend | null; certificates?: Certificate[] } = {}): IngressConfig {
  return {
    generation: extra.generation ?? 1,
    hosts,
    defaultBackend: extra.defaultBackend ?? null,
    certificates: new Map((extra.certificates ?? []).map((c) => [c.secret, c])),
  };
}

// The compiled Ingress configuration: what `compile.ts` makes of the Ingresses,
// IngressClasses and TLS Secrets of this controller's class together with a
// ClusterView, and the one thing the proxy (`proxy.ts`, `router.ts`) reads. Plain
// immutable data; a new configuration is a new object handed over whole
// (IngressProxy.setConfig), never one patched in place, so a request in flight keeps
// the configuration it started with.
//
// This is the contract between the controller and the proxy: extend it only with
// optional fields.

/** networking.k8s.io/v1 HTTPIngressPath.pathType; ImplementationSpecific is matched as Prefix (or as a regex with use-regex). */
export type PathType = 'Exact' | 'Prefix' | 'ImplementationSpecific';
/** tapir.dev/backend-protocol (ingress-nginx's backend-protocol): how the proxy talks to the endpoints. */
export type BackendProtocol = 'HTTP' | 'HTTPS' | 'GRPC';

/** An upstream: `ip` is IPv4 dotted or IPv6 RFC 5952 text (no brackets). */
export interface Endpoint { ip: string; port: number }

export interface Backend {
  /** "namespace/name:port" for logs, metrics and error bodies. */
  name: string;
  /** Ready endpoints of the Service port (serving+terminating as a fallback, as kube-proxy); empty = 503. */
  endpoints: Endpoint[];
  protocol: BackendProtocol;
}

export interface RouteOptions {
  /** tapir.dev/ssl-redirect: default true when the host has TLS. */
  sslRedirect: boolean;
  /** tapir.dev/affinity: cookie (+ session-cookie-name, -max-age (0 = a session cookie), -path). */
  affinityCookie: { name: string; maxAgeSeconds: number; path: string } | null;
  /** Bytes, 0 = unlimited; default 1 MiB as ingress-nginx. */
  proxyBodySize: number;
  /** Default 60 s. */
  proxyReadTimeoutMs: number;
  /** Default 5 s. */
  proxyConnectTimeoutMs: number;
  /** With useRegex: $1.. are the path regex's capture groups. */
  rewriteTarget: string | null;
  useRegex: boolean;
}

export interface Canary {
  backend: Backend;
  /** 0-100 (canary-weight): the share of requests the canary gets. */
  weight: number;
  /** canary-by-header (+ canary-by-header-value; null value: "always" / "never" as ingress-nginx). */
  header: { name: string; value: string | null } | null;
}

export interface PathRule {
  pathType: PathType;
  /** As written (a regex when options.useRegex). */
  path: string;
  backend: Backend;
  options: RouteOptions;
  canary: Canary | null;
  /** "namespace/name" of the Ingress that made the rule. */
  ingress: string;
}

export interface VirtualHost {
  /** '' = any host (rules without host), 'foo.com', or '*.foo.com'. */
  host: string;
  /**
   * In precedence order: the proxy takes the first that matches. compile sorts longer
   * paths before shorter, Exact before Prefix on the same path, then by the Ingress's
   * creation time and namespace/name.
   */
  paths: PathRule[];
  /** The Secret ("namespace/name") whose certificate serves this host, or null. */
  tls: string | null;
}

export interface Certificate {
  /** "namespace/name" of the kubernetes.io/tls Secret. */
  secret: string;
  certPem: string;
  keyPem: string;
  /** The hosts (Ingress spec.tls[].hosts) it serves, for SNI; may name hosts without rules. */
  hosts: string[];
}

export interface IngressConfig {
  /** Increases with every configuration the controller hands over. */
  generation: number;
  hosts: VirtualHost[];
  /** spec.defaultBackend of the (oldest) Ingress of this class that has one; null = 404. */
  defaultBackend: Backend | null;
  /** By Secret "namespace/name". */
  certificates: Map<string, Certificate>;
}

/** ingress-nginx's defaults (its ConfigMap's proxy-body-size, proxy-read-timeout, proxy-connect-timeout). */
export const DEFAULT_PROXY_BODY_SIZE = 1024 * 1024;
export const DEFAULT_PROXY_READ_TIMEOUT_MS = 60_000;
export const DEFAULT_PROXY_CONNECT_TIMEOUT_MS = 5_000;

/** The configuration before anything was compiled: every request is a 404. */
export function emptyIngressConfig(): IngressConfig {
  return { generation: 0, hosts: [], defaultBackend: null, certificates: new Map() };
}

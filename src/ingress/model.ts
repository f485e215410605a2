export type PathType = 'Exact' | 'Prefix' | 'ImplementationSpecific';
export type BackendProtocol = 'HTTP' | 'HTTPS' | 'GRPC';
export interface Endpoint { ip: string; port: number }
export interface Backend {
  /** "namespace/name:port" for logs, metrics and error bodies. */
  name: string;
  /** Ready endpoints of the Service port (serving+terminating as a fallback, as kube-proxy); empty = 503. */
  endpoints: Endpoint[];
  protocol: BackendProtocol;
}
export interface RouteOptions {
  sslRedirect: boolean;            // default true when the host has TLS
  affinityCookie: { name: string; maxAgeSeconds: number; path: string } | null;
  proxyBodySize: number;           // bytes, 0 = unlimited; default 1 MiB as ingress-nginx
  proxyReadTimeoutMs: number;      // default 60 s
  proxyConnectTimeoutMs: number;   // default 5 s
  rewriteTarget: string | null;    // with useRegex: $1.. capture groups
  useRegex: boolean;
}
export interface Canary {
  backend: Backend;
  weight: number;                  // 0-100 (canary-weight)
  header: { name: string; value: string | null } | null;   // canary-by-header(+value)
}
export interface PathRule {
  pathType: PathType;
  path: string;                    // as written (regex when options.useRegex)
  backend: Backend;
  options: RouteOptions;
  canary: Canary | null;
  /** "namespace/name" of the Ingress that made the rule. */
  ingress: string;
}
export interface VirtualHost {
  /** '' = any host (rules without host), 'foo.com', or '*.foo.com'. */
  host: string;
  /** In precedence order: the proxy takes the first that matches (compile sorts: Exact before Prefix on the same path, longer before shorter, then by ingress creation time/name). */
  paths: PathRule[];
  /** The Secret ("namespace/name") whose certificate serves this host, or null. */
  tls: string | null;
}
export interface Certificate { secret: string; certPem: string; keyPem: string; hosts: string[] }
export interface IngressConfig {
  generation: number;
  hosts: VirtualHost[];
  /** spec.defaultBackend of the (oldest) Ingress of this class that has one; null = 404. */
  defaultBackend: Backend | null;
  /** By Secret "namespace/name". */
  certificates: Map<string, Certificate>;
}

// What a Corefile reads into (corefile.ts): one ServerBlockConfig per server block and
// port, with each plugin's settings and CoreDNS's defaults filled in, and matchZone, the
// lookup the DNS server runs on these zone lists for every query (server.ts). They live
// apart from the reader so that the server and its observability import the shapes and
// the lookup without the Corefile's lexer and plugin checks.
export interface HostPort {
  /** '' = every address. */
  host: string;
  port: number;
}

export interface HealthConfig {
  address: HostPort;
  /** `lameduck`: how long DNS keeps answering (and /health says OK) after a stop is asked for. */
  lameduckMs: number;
}

export interface KubernetesConfig {
  /** Lower-case, no trailing dot; the server block's zones when the plugin names none. */
  zones: string[];
  ttl: number;
  pods: 'disabled' | 'insecure';
  /** null: none; []: every zone; else only these zones. */
  fallthrough: string[] | null;
  endpointPodNames: boolean;
  /** Only these namespaces' Services are answered; [] = all. */
  namespaces: string[];
}

export interface Upstream {
  address: string;
  port: number;
}

export interface ForwardConfig {
  /** The zone forwarded ('' = root). */
  from: string;
  upstreams: Upstream[];
  except: string[];
  forceTcp: boolean;
  preferUdp: boolean;
  policy: 'random' | 'round_robin' | 'sequential';
  healthCheckMs: number;
  maxFails: number;
  expireMs: number;
  maxConcurrent: number;
}

export interface CacheKindConfig {
  capacity: number;
  maxTtl: number;
  minTtl: number;
}

export interface CacheConfig {
  /** The zones cached ('' = root); the server block's zones when the plugin names none. */
  zones: string[];
  success: CacheKindConfig;
  denial: CacheKindConfig;
  /** `disable success|denial ZONES...`: these zones' answers of that kind are not cached. */
  disableSuccess: string[];
  disableDenial: string[];
}

export type LogClass = 'all' | 'denial' | 'error' | 'success';

export interface LogConfig {
  /** Only queries for names in these zones are logged ('' = root: all). */
  names: string[];
  /** CoreDNS's placeholders, `{common}` and `{combined}` already expanded. */
  format: string;
  classes: LogClass[];
}

export interface ServerBlockConfig {
  /** Lower-case, no trailing dot, '' = root (`.`). */
  zones: string[];
  port: number;
  /** The line of the block's first key, for messages. */
  line: number;
  /** The plugins of the block, in CoreDNS's execution order. */
  plugins: string[];
  /** `bind`: the addresses to listen on; [] = the server's default. */
  bind: string[];
  errors: boolean;
  log: LogConfig | null;
  health: HealthConfig | null;
  ready: { address: HostPort } | null;
  prometheus: { address: HostPort } | null;
  kubernetes: KubernetesConfig | null;
  forward: ForwardConfig | null;
  cache: CacheConfig | null;
  loop: boolean;
  reload: { intervalMs: number; jitterMs: number } | null;
  loadbalance: boolean;
}

export interface CorefileConfig {
  /** Where it was read from, for messages. */
  file: string;
  servers: ServerBlockConfig[];
}

/** The zone a name falls in among `zones` (the longest match), or undefined. Names and zones lower-case, no trailing dot. */
export function matchZone(name: string, zones: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const z of zones) {
    if (z === '' || name === z || (name.length > z.length && name.endsWith(z) && name.charCodeAt(name.length - z.length - 1) === 46)) {
      if (best === undefined || z.length > best.length) best = z;
    }
  }
  return best;
}

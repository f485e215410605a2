// The Ingress proxy's routing table: one immutable `Router` compiled from an
// `IngressConfig` when the configuration changes (setConfig), read by every request.
// Nothing is compiled per request: hosts are two Maps (exact names, and wildcard
// suffixes keyed by what follows the first label), paths are an ordered array of
// precompiled matchers (a prefix string or a RegExp built here, once).
//
// Matching follows the ingress-controller-conformance suite (kubernetes-sigs), which
// states networking.k8s.io/v1's rules:
// - Host: exact, case-insensitive (RFC 9110 4.2.3), port stripped; `*.foo.com` matches
//   exactly one label (`bar.foo.com`, not `baz.bar.foo.com` nor `foo.com`); an exact
//   host beats a wildcard; rules without a host ('') serve every other host.
// - Exact: the whole path, case-sensitive (`/foo` matches neither `/foo/` nor `/FOO`).
// - Prefix (and ImplementationSpecific, documented as Prefix): whole path elements
//   split by '/', case-sensitive; a trailing slash in the rule is ignored (`/foo/` is
//   `/foo`), so `/foo` matches `/foo`, `/foo/` and `/foo/bar` but not `/foobar`.
// - Several rules match: the longest path wins, and Exact beats Prefix on the same
//   path. compile.ts already sorts each host's paths that way; the router sorts again
//   (stably, so ties keep compile's ingress order) so the rule holds whoever built the
//   config.
// - A host that matched but has no matching path is not handed to the rules without a
//   host: as ingress-nginx (one nginx server block per host), it falls to the default
//   backend, and without one it is a 404.
// - use-regex (or rewrite-target, which implies it, as in ingress-nginx) makes the rule
//   an anchored, case-insensitive regular expression (nginx `location ~* ^path`);
//   rewrite-target then replaces the whole path with its $1.. capture groups.
//
// Canary choice follows ingress-nginx: canary-by-header first (with a header value,
// only that value selects the canary; without one, "always" selects it and "never"
// refuses it), then canary-weight (percent of the remaining requests).
import { createHash } from 'node:crypto';
import { headerValue } from './headers.ts';
import type { Backend, Endpoint, IngressConfig, PathRule, VirtualHost } from './model.ts';

/** How a rule matches: Exact, Prefix (path elements) or Regex. Numbers: the request path switches on them. */
const MatchKind = { Exact: 0, Prefix: 1, Regex: 2 } as const;
type MatchKind = (typeof MatchKind)[keyof typeof MatchKind];

/**
 * One backend's state for the life of one Router: the endpoint list, the round-robin
 * cursor and the affinity cookie value of each endpoint. A new configuration makes new
 * BackendStates, so a request in flight keeps the endpoints it started with.
 */
export class BackendState {
  readonly backend: Backend;
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  /** "ip:port" or "[ip6]:port" of each endpoint (the upstream pool key, logs). */
  readonly addresses: readonly string[];
  /** The affinity cookie value of each endpoint: a hash of its address, stable across configs. */
  readonly cookieValues: readonly string[];
  readonly #byCookie: Map<string, number>;
  /** Round robin cursor. */
  cursor: number;
  /** Per endpoint: until when (ms since epoch) it is skipped after a failed connect. */
  readonly downUntil: Float64Array;

  constructor(backend: Backend) {
    this.backend = backend;
    this.name = backend.name;
    this.endpoints = backend.endpoints;
    // host:port, an IPv6 endpoint's address in brackets (RFC 3986 3.2.2): undici's origin and the error bodies.
    this.addresses = backend.endpoints.map((e) => (e.ip.includes(':') ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`));
    this.cookieValues = this.addresses.map((a) => createHash('sha1').update(a).digest('hex').slice(0, 20));
    this.#byCookie = new Map(this.cookieValues.map((v, i) => [v, i]));
    // Start at a random place so that several proxies (one per node) do not all send
    // their first requests to the same endpoint.
    this.cursor = backend.endpoints.length > 0 ? Math.floor(Math.random() * backend.endpoints.length) : 0;
    this.downUntil = new Float64Array(backend.endpoints.length);
  }

  /** The endpoint index a cookie value names, or -1. */
  endpointForCookie(value: string): number {
    return this.#byCookie.get(value) ?? -1;
  }

  /**
   * The next endpoint by round robin, skipping `exclude` (indexes already tried for
   * this request) and endpoints whose connect failed lately while another is left.
   * -1 when every endpoint is excluded.
   */
  next(exclude: readonly number[], now: number): number {
    const n = this.endpoints.length;
    let fallback = -1;
    for (let k = 0; k < n; k++) {
      const i = this.cursor;
      this.cursor = i + 1 === n ? 0 : i + 1;
      if (exclude.includes(i)) continue;
      if (this.downUntil[i]! > now) {
        if (fallback < 0) fallback = i;
        continue;
      }
      return i;
    }
    return fallback;
  }
}

export interface CanaryRoute {
  readonly backend: BackendState;
  readonly weight: number;
  /** Lower-case header name, or null. */
  readonly header: string | null;
  readonly headerValue: string | null;
}

export class RouteRule {
  readonly rule: PathRule;
  readonly kind: MatchKind;
  /** Exact: the path; Prefix: the path without trailing slashes ('' for '/'). */
  readonly path: string;
  readonly regex: RegExp | null;
  readonly backend: BackendState;
  readonly canary: CanaryRoute | null;
  /** rewrite-target split into literal text and capture group numbers ($1 -> 1). */
  readonly #target: (string | number)[] | null;

  constructor(rule: PathRule, state: (b: Backend) => BackendState) {
    this.rule = rule;
    const regex = rule.options.useRegex || rule.options.rewriteTarget !== null;
    if (regex) {
      this.kind = MatchKind.Regex;
      this.path = rule.path;
      // A path that is no valid expression (compile should have refused it) matches
      // nothing rather than taking the proxy down.
      let re: RegExp | null;
      try {
        re = new RegExp(rule.pathType === 'Exact' ? `^(?:${rule.path})$` : `^${rule.path}`, 'i');
      } catch {
        re = /(?!)/;
      }
      this.regex = re;
    } else if (rule.pathType === 'Exact') {
      this.kind = MatchKind.Exact;
      this.path = rule.path;
      this.regex = null;
    } else {
      this.kind = MatchKind.Prefix;
      this.path = rule.path.replace(/\/+$/, '');
      this.regex = null;
    }
    this.#target = rule.options.rewriteTarget === null ? null : splitTarget(rule.options.rewriteTarget);
    this.backend = state(rule.backend);
    const c = rule.canary;
    this.canary = c === null ? null : {
      backend: state(c.backend),
      weight: c.weight,
      header: c.header === null ? null : c.header.name.toLowerCase(),
      headerValue: c.header?.value ?? null,
    };
  }

  matches(path: string): boolean {
    switch (this.kind) {
      case MatchKind.Exact: return path === this.path;
      case MatchKind.Prefix: {
        const p = this.path;
        // Whole elements: the rule is the path, or is followed by '/' in it.
        return path.startsWith(p) && (path.length === p.length || path.charCodeAt(p.length) === 47 /* '/' */);
      }
      default: return this.regex!.test(path);
    }
  }

  /** The upstream path (with `query`, '' or '?...') after rewrite-target. */
  upstreamPath(path: string, query: string): string {
    const target = this.#target;
    if (target === null) return path + query;
    const m = this.regex!.exec(path);
    if (m === null) return path + query;
    // nginx `rewrite`: the replacement is the whole new URI; $N are the capture groups
    // (an absent group is empty), and the original arguments are appended.
    let out = '';
    for (let i = 0; i < target.length; i++) {
      const part = target[i]!;
      out += typeof part === 'string' ? part : m[part] ?? '';
    }
    return (out.charCodeAt(0) === 47 ? out : `/${out}`) + query;
  }

  /** The backend for a request (its header lines as [name, value, ...]): the canary when its header or its weight says so. */
  choose(headers: readonly string[], random: number): BackendState {
    const c = this.canary;
    if (c === null) return this.backend;
    if (c.header !== null) {
      const value = headerValue(headers, c.header);
      if (value !== undefined) {
        if (c.headerValue !== null) {
          if (value === c.headerValue) return c.backend;
        } else if (value === 'always') {
          return c.backend;
        } else if (value === 'never') {
          return this.backend;
        }
      }
    }
    return random * 100 < c.weight ? c.backend : this.backend;
  }
}

export class RouteHost {
  readonly host: string;
  readonly rules: readonly RouteRule[];
  readonly tls: string | null;

  constructor(vhost: VirtualHost, state: (b: Backend) => BackendState) {
    this.host = vhost.host.toLowerCase();
    this.tls = vhost.tls;
    // Longest first, Exact before the others on equal length; stable for ties.
    const indexed = vhost.paths.map((rule, i) => ({ rule, i, len: rulePathLength(rule), exact: rule.pathType === 'Exact' ? 0 : 1 }));
    indexed.sort((a, b) => b.len - a.len || a.exact - b.exact || a.i - b.i);
    this.rules = indexed.map((x) => new RouteRule(x.rule, state));
  }

  match(path: string): RouteRule | null {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      if (rules[i]!.matches(path)) return rules[i]!;
    }
    return null;
  }
}

function splitTarget(target: string): (string | number)[] {
  const parts: (string | number)[] = [];
  let last = 0;
  for (const m of target.matchAll(/\$(\d)/g)) {
    if (m.index > last) parts.push(target.slice(last, m.index));
    parts.push(Number(m[1]));
    last = m.index + m[0].length;
  }
  if (last < target.length) parts.push(target.slice(last));
  return parts;
}

/** A Prefix rule's length without its trailing slashes, so `/foo/` ranks as `/foo`. */
function rulePathLength(rule: PathRule): number {
  if (rule.pathType === 'Exact' || rule.options.useRegex || rule.options.rewriteTarget !== null) return rule.path.length;
  return rule.path.replace(/\/+$/, '').length;
}

export interface RouteMatch {
  /** The virtual host that took the request (null: none, or only the default backend). */
  host: RouteHost | null;
  /** The path rule, or null when the default backend (or nothing) serves the request. */
  rule: RouteRule | null;
  /** The default backend when no rule matched; null with `rule` null means 404. */
  defaultBackend: BackendState | null;
}

/** The host of a Host header or :authority: lower case, without port or trailing dot. */
export function normalizeHost(authority: string | undefined): string {
  if (authority === undefined || authority === '') return '';
  let h = authority;
  if (h.charCodeAt(0) === 91 /* '[' */) {
    const end = h.indexOf(']');
    h = end < 0 ? h : h.slice(0, end + 1);
  } else {
    const colon = h.indexOf(':');
    if (colon >= 0) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.toLowerCase();
}

export class Router {
  readonly generation: number;
  readonly #exact = new Map<string, RouteHost>();
  /** '*.foo.com' by 'foo.com'. */
  readonly #wildcard = new Map<string, RouteHost>();
  readonly #anyHost: RouteHost | null;
  readonly defaultBackend: BackendState | null;
  /** Every BackendState of this config. */
  readonly backends: readonly BackendState[];
  /** Every path rule of every host (the proxy's pool bookkeeping). */
  readonly rules: readonly RouteRule[];
  /** Server name (exact, or '*.suffix' by suffix) -> Secret, for SNI. */
  readonly #sniExact = new Map<string, string>();
  readonly #sniWildcard = new Map<string, string>();

  constructor(config: IngressConfig) {
    this.generation = config.generation;
    // One BackendState per Backend object: rules that share a backend share its cursor.
    const states = new Map<Backend, BackendState>();
    const state = (b: Backend): BackendState => {
      let s = states.get(b);
      if (s === undefined) states.set(b, s = new BackendState(b));
      return s;
    };
    let anyHost: RouteHost | null = null;
    for (const vhost of config.hosts) {
      const h = new RouteHost(vhost, state);
      if (h.host === '') anyHost = h;
      else if (h.host.startsWith('*.')) this.#wildcard.set(h.host.slice(2), h);
      else this.#exact.set(h.host, h);
    }
    this.#anyHost = anyHost;
    this.rules = [...this.#exact.values(), ...this.#wildcard.values(), ...(anyHost === null ? [] : [anyHost])].flatMap((h) => h.rules);
    this.defaultBackend = config.defaultBackend === null ? null : state(config.defaultBackend);
    this.backends = [...states.values()];

    // SNI: each TLS secret's own tls.hosts first, then the virtual hosts that name a
    // secret (a host's rules decide when both name it).
    for (const cert of config.certificates.values()) {
      for (const name of cert.hosts) this.#addSni(name.toLowerCase(), cert.secret);
    }
    for (const vhost of config.hosts) {
      if (vhost.tls !== null && vhost.host !== '' && config.certificates.has(vhost.tls)) this.#addSni(vhost.host.toLowerCase(), vhost.tls);
    }
  }

  #addSni(name: string, secret: string): void {
    if (name.startsWith('*.')) this.#sniWildcard.set(name.slice(2), secret);
    else this.#sniExact.set(name, secret);
  }

  /** The virtual host for a normalized host name (exact, then wildcard, then any host). */
  host(host: string): RouteHost | null {
    const exact = this.#exact.get(host);
    if (exact !== undefined) return exact;
    if (this.#wildcard.size > 0) {
      const dot = host.indexOf('.');
      if (dot > 0) {
        const w = this.#wildcard.get(host.slice(dot + 1));
        if (w !== undefined) return w;
      }
    }
    return this.#anyHost;
  }

  /** The route for a normalized host and a path (without query). */
  route(host: string, path: string): RouteMatch {
    const h = this.host(host);
    const rule = h === null ? null : h.match(path);
    return { host: h, rule, defaultBackend: rule === null ? this.defaultBackend : null };
  }

  /** The Secret whose certificate serves a TLS server name, or null (the default certificate). */
  secretForServerName(serverName: string): string | null {
    const name = serverName.toLowerCase();
    const exact = this.#sniExact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    return dot > 0 ? this.#sniWildcard.get(name.slice(dot + 1)) ?? null : null;
  }
}

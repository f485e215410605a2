// Ingresses, IngressClasses and TLS Secrets, with the ClusterView of Services and their
// endpoints, compiled into one IngressConfig (model.ts) and the list of problems: the
// complete desired state, every time (kube-proxy's model; the controller coalesces the
// changes that call for it).
//
// Which Ingresses are ours (ingress-nginx's rules, with this controller's class name):
//   - the kubernetes.io/ingress.class annotation, when set, decides alone: ours when it
//     names our class;
//   - else spec.ingressClassName: ours when it names our IngressClass and that class's
//     spec.controller is tapir.dev/ingress-controller; a class of another controller is
//     someone else's; a class that does not exist is nobody's (no address; reported);
//   - else ours when our IngressClass is the default class (is-default-class "true").
//
// Merging (deterministic): Ingresses are taken oldest first (creationTimestamp, then
// namespace/name; one without a creation time counts as oldest). The rules of every
// Ingress for one host merge into one virtual host; when two give the same host, path
// and pathType (a Prefix path's trailing "/" ignored), the older Ingress's rule wins and
// the newer's is reported. So does a host's TLS Secret and the default backend: the
// oldest Ingress that names one. Canary Ingresses (canary: "true") add no rules of their
// own: each of their rules becomes the canary of the main rule with the same host, path
// and pathType.
//
// A problem costs the least it can: a bad path loses its rule, an unknown Service or port
// gives a backend without endpoints (503 with the backend's name), a missing Secret
// leaves its hosts on the default certificate, a resource backend is a 503; the rest of
// the Ingress serves.
import { describeOrigin, namespacedName, type IngressBackendRef, type IngressClassObject, type IngressObject, type SecretObject } from '../k8s/objects.ts';
import type { ClusterView, EndpointView, ServiceView } from '../model/cluster-view.ts';
import { L4Protocol } from '../model/service-snapshot.ts';
import { ipv4ToString } from '../wire/address.ts';
import { readAnnotations, type IngressAnnotations } from './annotations.ts';
import {
  DEFAULT_PROXY_BODY_SIZE, DEFAULT_PROXY_CONNECT_TIMEOUT_MS, DEFAULT_PROXY_READ_TIMEOUT_MS,
  type Backend, type BackendProtocol, type Canary, type Certificate, type Endpoint, type IngressConfig, type PathRule, type PathType, type RouteOptions, type VirtualHost,
} from './model.ts';

/** IngressClass spec.controller of Tapir's controller. */
export const CONTROLLER_NAME = 'tapir.dev/ingress-controller';
/** The class annotation from before IngressClass (still honoured by ingress-nginx). */
export const LEGACY_CLASS_ANNOTATION = 'kubernetes.io/ingress.class';
/** The default --class: the IngressClass the lab and the deployment create. */
export const DEFAULT_CLASS_NAME = 'tapir';

/** Regex metacharacters: in an Exact or Prefix path they are literal characters, which is never what the author meant. */
const REGEX_CHARS = /[\^$*+?()[\]{}|\\]/;

export interface IngressInputs {
  ingresses: readonly IngressObject[];
  classes: readonly IngressClassObject[];
  /** By "namespace/name". */
  secrets: ReadonlyMap<string, SecretObject>;
  /** The Services with their endpoints; undefined before the first sync (every backend is then empty). */
  view: ClusterView | undefined;
}

export interface CompileOptions {
  /** Our IngressClass's name (--class). */
  className: string;
  generation: number;
}

export interface IngressProblem {
  /** "namespace/name" of the Ingress. */
  ingress: string;
  /** "<origin> (Ingress ns/name): <field>: <what is wrong, and what happens>". */
  message: string;
}

export interface CompileResult {
  config: IngressConfig;
  problems: IngressProblem[];
  /** "namespace/name" of every Ingress this controller serves (their status gets our address). */
  ours: string[];
}

/** Whether `ing` belongs to the controller of class `className`, and why not. */
export function classifyIngress(ing: IngressObject, classes: readonly IngressClassObject[], className: string): { ours: boolean; problem: string } {
  const legacy = ing.metadata.annotations[LEGACY_CLASS_ANNOTATION];
  if (legacy !== undefined && legacy !== '') return { ours: legacy === className, problem: '' };
  const own = classes.find((c) => c.metadata.name === className && c.controller === CONTROLLER_NAME);
  if (ing.spec.ingressClassName !== '') {
    const named = classes.find((c) => c.metadata.name === ing.spec.ingressClassName);
    if (named === undefined) {
      const ourName = ing.spec.ingressClassName === className;
      return { ours: false, problem: ourName ? `spec.ingressClassName: IngressClass ${JSON.stringify(className)} does not exist; the Ingress is not served and gets no address (create the IngressClass with spec.controller ${CONTROLLER_NAME})` : '' };
    }
    return { ours: named === own, problem: '' };
  }
  return { ours: own?.isDefault === true, problem: '' };
}

/** Oldest first: creationTimestamp, then namespace/name. */
function byAge(a: IngressObject, b: IngressObject): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  const ka = namespacedName(a);
  const kb = namespacedName(b);
  if (ta !== tb) return Date.parse(ta || '1970-01-01T00:00:00Z') - Date.parse(tb || '1970-01-01T00:00:00Z') || (ta < tb ? -1 : 1);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

interface HostState {
  rules: Map<string, PathRule>;
  /** Rule order of arrival (the oldest Ingress's rules first), for the final sort's last key. */
  order: Map<PathRule, number>;
  /** Each rule's ssl-redirect annotation; null = not set (then: redirect when the host has TLS). */
  ssl: Map<PathRule, boolean | null>;
  tls: string | null;
  /** The Ingress that set tls. */
  tlsFrom: string;
}

export function compileIngresses(inputs: IngressInputs, opts: CompileOptions): CompileResult {
  const problems: IngressProblem[] = [];
  const seen = new Set<string>();
  const services = new Map<string, ServiceView>((inputs.view?.services ?? []).map((s) => [s.key, s]));
  const backends = new Map<string, Backend>();
  const hosts = new Map<string, HostState>();
  const certificates = new Map<string, Certificate>();
  const ours: string[] = [];
  const canaries: { ing: IngressObject; ann: IngressAnnotations }[] = [];
  let defaultBackend: Backend | null = null;
  let defaultFrom = '';
  let ruleCount = 0;

  const report = (ing: IngressObject, field: string, message: string): void => {
    const text = `${describeOrigin(ing)}: ${field === '' ? '' : `${field}: `}${message}`;
    if (seen.has(text)) return;
    seen.add(text);
    problems.push({ ingress: namespacedName(ing), message: text });
  };

  const resolve = (ing: IngressObject, ref: IngressBackendRef, protocol: BackendProtocol, field: string): Backend => {
    const ns = ing.metadata.namespace;
    if (ref.resource !== null || ref.service === null) {
      const r = ref.resource;
      const name = r === null ? `${ns}/(no backend)` : `${ns}/${r.apiGroup === '' ? '' : `${r.apiGroup}/`}${r.kind}/${r.name} (a resource backend, not supported)`;
      report(ing, `${field}.resource`, 'resource backends are not supported by Tapir (use a Service backend); requests for this rule get 503');
      return { name, endpoints: [], protocol };
    }
    const { name, port } = ref.service;
    const key = `${ns}/${name}:${port}/${protocol}`;
    const known = backends.get(key);
    const svc = services.get(`${ns}/${name}`);
    const backendName = `${ns}/${name}:${port}`;
    if (svc === undefined) {
      report(ing, `${field}.service.name`, `Service ${ns}/${name} does not exist; requests for this rule get 503 until it does`);
      return known ?? remember(key, { name: backendName, endpoints: [], protocol });
    }
    const servicePort = svc.ports.find((p) => (typeof port === 'number' ? p.port === port : p.name === port));
    if (servicePort === undefined) {
      const list = svc.ports.map((p) => (p.name === '' ? String(p.port) : `${p.port} (${p.name})`)).join(', ');
      report(ing, `${field}.service.port`, `Service ${ns}/${name} has no port ${JSON.stringify(port)} (its ports: ${list || 'none'}); requests for this rule get 503`);
      return known ?? remember(key, { name: backendName, endpoints: [], protocol });
    }
    if (servicePort.protocol !== L4Protocol.TCP) {
      report(ing, `${field}.service.port`, `port ${JSON.stringify(port)} of Service ${ns}/${name} is UDP; an Ingress backend must be TCP`);
      return known ?? remember(key, { name: backendName, endpoints: [], protocol });
    }
    if (svc.type === 'ExternalName') {
      report(ing, `${field}.service.name`, `Service ${ns}/${name} is of type ExternalName, which Tapir does not proxy to; requests for this rule get 503`);
      return known ?? remember(key, { name: backendName, endpoints: [], protocol });
    }
    if (known !== undefined) return known;
    return remember(key, { name: backendName, endpoints: upstreamEndpoints(svc, servicePort.name), protocol });
  };
  const remember = (key: string, b: Backend): Backend => {
    backends.set(key, b);
    return b;
  };

  const mine = inputs.ingresses.filter((ing) => {
    const c = classifyIngress(ing, inputs.classes, opts.className);
    if (c.problem !== '') report(ing, '', c.problem);
    return c.ours;
  }).sort(byAge);

  for (const ing of mine) {
    const key = namespacedName(ing);
    ours.push(key);
    const ann = readAnnotations(ing.metadata.annotations, (field, message) => report(ing, field, message));
    if (ann.canary !== null) {
      canaries.push({ ing, ann });
      continue;
    }
    addTls(ing, inputs.secrets, hosts, certificates, report);
    if (ing.spec.defaultBackend !== null) {
      if (defaultBackend === null) {
        defaultBackend = resolve(ing, ing.spec.defaultBackend, ann.backendProtocol, 'spec.defaultBackend');
        defaultFrom = key;
      } else {
        report(ing, 'spec.defaultBackend', `ignored: the older Ingress ${defaultFrom} already gives the default backend`);
      }
    }
    ing.spec.rules.forEach((rule, i) => {
      const host = hostState(hosts, rule.host);
      rule.paths.forEach((p, j) => {
        const field = `spec.rules[${i}].http.paths[${j}]`;
        const checked = checkPath(p.path, p.pathType, ann.useRegex);
        if (typeof checked === 'object') {
          report(ing, `${field}.path`, `${checked.problem}; this path is not served, the rest of the Ingress is`);
          return;
        }
        const backend = resolve(ing, p.backend, ann.backendProtocol, `${field}.backend`);
        const pathRule: PathRule = { pathType: p.pathType, path: checked, backend, options: routeOptions(ann, checked, p.pathType), canary: null, ingress: key };
        const ruleKey = conflictKey(p.pathType, checked, ann.useRegex);
        const earlier = host.rules.get(ruleKey);
        if (earlier !== undefined) {
          report(ing, `${field}.path`, `host ${JSON.stringify(rule.host || '*')} path ${JSON.stringify(p.path)} (${p.pathType}) is already routed by the older Ingress ${earlier.ingress}, which wins; this rule is not served`);
          return;
        }
        host.rules.set(ruleKey, pathRule);
        host.order.set(pathRule, ruleCount++);
        host.ssl.set(pathRule, ann.sslRedirect);
      });
    });
  }

  for (const { ing, ann } of canaries) {
    const canaryAnn = ann.canary!;
    ing.spec.rules.forEach((rule, i) => {
      rule.paths.forEach((p, j) => {
        const field = `spec.rules[${i}].http.paths[${j}]`;
        const checked = checkPath(p.path, p.pathType, ann.useRegex);
        if (typeof checked === 'object') {
          report(ing, `${field}.path`, `${checked.problem}; this canary is not served`);
          return;
        }
        const main = hosts.get(rule.host)?.rules.get(conflictKey(p.pathType, checked, ann.useRegex));
        if (main === undefined) {
          report(ing, field, `canary for host ${JSON.stringify(rule.host || '*')} path ${JSON.stringify(p.path)} (${p.pathType}) has no main Ingress with the same host, path and pathType; it is not served`);
          return;
        }
        if (main.canary !== null) {
          report(ing, field, `host ${JSON.stringify(rule.host || '*')} path ${JSON.stringify(p.path)} already has a canary from an older Ingress, which wins`);
          return;
        }
        const canary: Canary = { backend: resolve(ing, p.backend, ann.backendProtocol, `${field}.backend`), weight: canaryAnn.weight, header: canaryAnn.header };
        replaceRule(hosts.get(rule.host)!, main, { ...main, canary });
      });
    });
  }

  const compiled: VirtualHost[] = [];
  for (const [host, state] of [...hosts].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    if (state.rules.size === 0) continue;
    const paths = [...state.rules.values()]
      .sort((a, b) => precedence(a, b) || state.order.get(a)! - state.order.get(b)!)
      .map((r) => Object.freeze({ ...r, options: Object.freeze({ ...r.options, sslRedirect: state.ssl.get(r) ?? state.tls !== null }) }));
    compiled.push(Object.freeze({ host, paths, tls: state.tls }));
  }
  for (const b of backends.values()) Object.freeze(b);
  return {
    config: { generation: opts.generation, hosts: compiled, defaultBackend, certificates },
    problems,
    ours,
  };
}

/** An endpoint of either family, its address as text. */
type AnyEndpoint = Omit<EndpointView, 'ip'> & { ip: string };

/**
 * The upstream endpoints of one service port. The proxy terminates HTTP, so a client of
 * either family may go to an endpoint of either family: an IPv6-only Service's
 * endpoints are IPv6, an IPv4 one's IPv4. A dual-stack Service lists each Pod once per
 * family; the upstreams are its primary family's (spec.ipFamilies[0]) alone, so each
 * Pod is one upstream: round robin and the affinity cookie count Pods, and the
 * connect-retry's MAX_TRIES reaches that many different Pods instead of maybe the dead
 * Pod's other address (ingress-nginx, which takes every slice's addresses, has both).
 * The other family serves when the primary has nothing: kube-proxy's choice, the ready
 * endpoints, in the primary family, then the other; none ready, the serving terminating
 * ones in the same order.
 */
export function upstreamEndpoints(svc: ServiceView, portName: string): Endpoint[] {
  const four: AnyEndpoint[] = svc.endpoints.map((e) => ({ ...e, ip: ipv4ToString(e.ip) }));
  const six: readonly AnyEndpoint[] = svc.endpoints6;
  const families = svc.ipFamilies[0] === 'IPv6' ? [six, four] : [four, six];
  for (const usable of [(e: AnyEndpoint) => e.ready, (e: AnyEndpoint) => e.serving && e.terminating]) {
    for (const family of families) {
      const endpoints = family.filter(usable).flatMap((e) => {
        const p = e.ports.find((q) => q.name === portName && q.protocol === L4Protocol.TCP);
        return p === undefined ? [] : [{ ip: e.ip, port: p.port }];
      });
      if (endpoints.length > 0) return endpoints;
    }
  }
  return [];
}

function routeOptions(ann: IngressAnnotations, path: string, pathType: PathType): RouteOptions {
  const regex = ann.useRegex && pathType !== 'Exact';
  return {
    sslRedirect: false, // resolved per host once its TLS is known
    affinityCookie: ann.affinityCookie === null ? null : { ...ann.affinityCookie, path: ann.affinityCookie.path ?? (regex ? '/' : path) },
    proxyBodySize: ann.proxyBodySize ?? DEFAULT_PROXY_BODY_SIZE,
    proxyReadTimeoutMs: ann.proxyReadTimeoutMs ?? DEFAULT_PROXY_READ_TIMEOUT_MS,
    proxyConnectTimeoutMs: ann.proxyConnectTimeoutMs ?? DEFAULT_PROXY_CONNECT_TIMEOUT_MS,
    rewriteTarget: ann.rewriteTarget,
    useRegex: regex,
  };
}

function hostState(hosts: Map<string, HostState>, host: string): HostState {
  let state = hosts.get(host);
  if (state === undefined) {
    state = { rules: new Map(), order: new Map(), ssl: new Map(), tls: null, tlsFrom: '' };
    hosts.set(host, state);
  }
  return state;
}

function replaceRule(host: HostState, old: PathRule, next: PathRule): void {
  for (const [k, r] of host.rules) if (r === old) host.rules.set(k, next);
  host.order.set(next, host.order.get(old)!);
  host.ssl.set(next, host.ssl.get(old) ?? null);
}

/**
 * The path as served, or why it cannot be: a path must be absolute; Exact and Prefix
 * paths are literal, so regex metacharacters in them are a mistake; a regex needs
 * use-regex (ingress-nginx's rule) and must compile. An empty Prefix or
 * ImplementationSpecific path is "/", as ingress-nginx serves it.
 */
export function checkPath(path: string, pathType: PathType, useRegex: boolean): string | { problem: string } {
  if (path === '') {
    if (pathType === 'Exact') return { problem: 'required for pathType Exact' };
    return '/';
  }
  if (!path.startsWith('/')) return { problem: `${JSON.stringify(path)} must start with "/"` };
  if (useRegex && pathType !== 'Exact') {
    try {
      new RegExp(path);
    } catch (err) {
      return { problem: `${JSON.stringify(path)} is not a valid regular expression (${(err as Error).message})` };
    }
    return path;
  }
  if (REGEX_CHARS.test(path)) {
    if (pathType === 'ImplementationSpecific') return { problem: `${JSON.stringify(path)} looks like a regular expression, but tapir.dev/use-regex is not "true" (set it to match paths by regex)` };
    return { problem: `${JSON.stringify(path)} has regular expression characters, which a ${pathType} path matches literally (for a regex, use pathType ImplementationSpecific with tapir.dev/use-regex: "true")` };
  }
  return path;
}

/** Two rules with the same key are the same route: a Prefix path's trailing "/" does not count (the conformance suite's rule). */
function conflictKey(pathType: PathType, path: string, useRegex: boolean): string {
  const literal = !(useRegex && pathType !== 'Exact');
  const normalized = literal && pathType !== 'Exact' && path.length > 1 ? path.replace(/\/+$/, '') || '/' : path;
  return `${pathType}\u0000${normalized}`;
}

/** Longer paths first (a Prefix's trailing "/" not counted), then Exact before Prefix on the same path. */
function precedence(a: PathRule, b: PathRule): number {
  const la = effectiveLength(a);
  const lb = effectiveLength(b);
  if (la !== lb) return lb - la;
  const ea = a.pathType === 'Exact' ? 0 : 1;
  const eb = b.pathType === 'Exact' ? 0 : 1;
  return ea - eb;
}

function effectiveLength(r: PathRule): number {
  if (r.pathType === 'Exact' || r.options.useRegex) return r.path.length;
  return r.path === '/' ? 1 : r.path.replace(/\/+$/, '').length;
}

function addTls(
  ing: IngressObject, secrets: ReadonlyMap<string, SecretObject>, hosts: Map<string, HostState>, certificates: Map<string, Certificate>,
  report: (ing: IngressObject, field: string, message: string) => void,
): void {
  const key = namespacedName(ing);
  ing.spec.tls.forEach((t, i) => {
    const field = `spec.tls[${i}].secretName`;
    if (t.secretName === '') {
      report(ing, field, 'not set: these hosts get the default certificate');
      return;
    }
    const secretKey = `${ing.metadata.namespace}/${t.secretName}`;
    const secret = secrets.get(secretKey);
    if (secret === undefined || secret.tls === null) {
      const why = secret === undefined ? 'does not exist (or is not valid: see its own problem)' : `is of type ${JSON.stringify(secret.type)}, not kubernetes.io/tls`;
      report(ing, field, `Secret ${secretKey} ${why}; hosts ${t.hosts.join(', ') || '(none)'} get the default certificate until it does`);
      return;
    }
    let cert = certificates.get(secretKey);
    if (cert === undefined) {
      cert = { secret: secretKey, certPem: secret.tls.certPem, keyPem: secret.tls.keyPem, hosts: [] };
      certificates.set(secretKey, cert);
    }
    for (const host of t.hosts) {
      if (!cert.hosts.includes(host)) cert.hosts.push(host);
      const state = hostState(hosts, host);
      if (state.tls === null) {
        state.tls = secretKey;
        state.tlsFrom = key;
      } else if (state.tls !== secretKey) {
        report(ing, field, `host ${JSON.stringify(host)} already has the certificate of Secret ${state.tls} from the older Ingress ${state.tlsFrom}, which wins`);
      }
    }
  });
}

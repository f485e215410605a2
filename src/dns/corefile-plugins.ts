// The plugins of a Corefile's server block: each plugin's arguments and `{ }` options
// read into its part of a ServerBlockConfig with CoreDNS's defaults (the plugin READMEs),
// and the block's plugins listed in CoreDNS's *execution* order (plugin.cfg), not the
// order of the file: `cache` above `kubernetes` above `forward`. A plugin or an option
// Tapir does not implement is an error that names it with its line, never silently
// dropped; the checks every plugin needs (argument counts, durations, numbers, zones,
// addresses) are PluginReader's, so that each plugin's messages read alike.
import { isIP } from 'node:net';
import { parseGoDuration } from '../config/duration.ts';
import type { CacheConfig, CacheKindConfig, ForwardConfig, HealthConfig, HostPort, KubernetesConfig, LogClass, LogConfig, ServerBlockConfig } from './corefile-config.ts';
import { DEFAULT_DNS_PORT, normalizeZone, parseHostPort, parseUpstream, reverseZone } from './corefile-addresses.ts';
import type { Directive } from './corefile-syntax.ts';

/**
 * CoreDNS's plugin.cfg, in order: the order plugins see a query in, whatever the order of
 * the Corefile. Plugins not in this list are unknown; those in it that Tapir does not
 * implement are "not supported".
 */
export const PLUGIN_ORDER: readonly string[] = [
  'root', 'metadata', 'geoip', 'cancel', 'tls', 'timeouts', 'multisocket', 'reload', 'nsid', 'bufsize', 'bind', 'debug',
  'trace', 'ready', 'health', 'pprof', 'prometheus', 'errors', 'log', 'dnstap', 'local', 'dns64', 'acl', 'any', 'chaos',
  'loadbalance', 'tsig', 'cache', 'rewrite', 'header', 'dnssec', 'autopath', 'minimal', 'template', 'transfer', 'hosts',
  'route53', 'azure', 'clouddns', 'k8s_external', 'kubernetes', 'file', 'auto', 'secondary', 'etcd', 'loop', 'forward',
  'grpc', 'erratic', 'whoami', 'on', 'sign', 'view',
];

/** The plugins Tapir implements. */
export const SUPPORTED_PLUGINS: readonly string[] = [
  'reload', 'bind', 'ready', 'health', 'prometheus', 'errors', 'log', 'loadbalance', 'cache', 'kubernetes', 'loop', 'forward',
];

/** CoreDNS's defaults (plugin READMEs). */
const CACHE_CAPACITY = 9984;
const CACHE_MAX_TTL = 3600;
const CACHE_MAX_DENIAL_TTL = 1800;
const CACHE_MIN_TTL = 5;
/** `log` without a format: CoreDNS's {common}. */
export const COMMON_LOG_FORMAT = '{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}';
const COMBINED_LOG_FORMAT = `${COMMON_LOG_FORMAT} "{>opcode}"`;
/** The placeholders the query log fills in (src/dns/query-log.ts). */
export const LOG_PLACEHOLDERS: readonly string[] = [
  'remote', 'port', 'type', 'class', 'name', 'proto', 'size', 'rcode', 'rsize', 'duration',
  '>id', '>do', '>bufsize', '>rflags', '>opcode',
];

type At = (line: number, m: string) => void;

export function readServerBlock(zones: string[], port: number, line: number, directives: Directive[], at: At, readResolvConf: (path: string) => string[]): ServerBlockConfig {
  const server: ServerBlockConfig = {
    zones, port, line, plugins: [], bind: [], errors: false, log: null, health: null, ready: null, prometheus: null,
    kubernetes: null, forward: null, cache: null, loop: false, reload: null, loadbalance: false,
  };
  const seen = new Map<string, number>();
  for (const d of directives) {
    const name = d.name;
    if (!PLUGIN_ORDER.includes(name)) { at(d.line, `unknown plugin "${name}" (not a CoreDNS plugin)`); continue; }
    if (!SUPPORTED_PLUGINS.includes(name)) { at(d.line, `plugin "${name}" is not supported by Tapir`); continue; }
    const first = seen.get(name);
    if (first !== undefined && name !== 'bind') { at(d.line, `plugin "${name}" appears twice in this server block (also line ${first})`); continue; }
    seen.set(name, d.line);
    const p = new PluginReader(d, at);
    switch (name) {
      case 'bind': readBind(p, server); break;
      case 'errors': p.noArgs(); p.options({}); server.errors = true; break;
      case 'log': server.log = readLog(p); break;
      case 'health': server.health = readHealth(p); break;
      case 'ready': p.maxArgs(1); p.options({}); server.ready = { address: p.address(0, 8181) }; break;
      case 'prometheus': p.maxArgs(1); p.options({}); server.prometheus = { address: p.address(0, 9153, '127.0.0.1') }; break;
      case 'kubernetes': server.kubernetes = readKubernetes(p, zones); break;
      case 'forward': server.forward = readForward(p, readResolvConf); break;
      case 'cache': server.cache = readCache(p, zones); break;
      case 'loop': p.noArgs(); p.options({}); server.loop = true; break;
      case 'reload': server.reload = readReload(p); break;
      case 'loadbalance': readLoadbalance(p); server.loadbalance = true; break;
    }
  }
  server.plugins = PLUGIN_ORDER.filter((n) => seen.has(n));
  return server;
}

/** One plugin's line and its option block, with the checks every plugin needs. */
class PluginReader {
  readonly d: Directive;
  readonly at: At;
  constructor(d: Directive, at: At) { this.d = d; this.at = at; }

  get args(): string[] { return this.d.args.map((a) => a.text); }
  get name(): string { return this.d.name; }

  noArgs(): void { if (this.d.args.length > 0) this.at(this.d.line, `plugin "${this.name}" takes no arguments`); }

  maxArgs(n: number): void {
    if (this.d.args.length > n) this.at(this.d.line, `plugin "${this.name}" takes at most ${n} argument${n === 1 ? '' : 's'}, got ${this.d.args.length}`);
  }

  /** Runs the handler of each option; an option without one is "not supported". */
  options(handlers: Record<string, (args: string[], line: number) => void>): void {
    if (this.d.block === null) return;
    const seen = new Set<string>();
    for (const o of this.d.block) {
      const h = handlers[o.name];
      if (h === undefined) {
        this.at(o.line, `option "${o.name}" of plugin "${this.name}" is not supported by Tapir`);
        continue;
      }
      if (seen.has(o.name) && o.name !== 'disable') this.at(o.line, `option "${o.name}" of plugin "${this.name}" is given twice`);
      seen.add(o.name);
      h(o.args.map((a) => a.text), o.line);
    }
  }

  address(i: number, defaultPort: number, defaultHost = ''): HostPort {
    const text = this.args[i];
    if (text === undefined) return { host: defaultHost, port: defaultPort };
    const hp = parseHostPort(text, defaultPort);
    if (hp === undefined) {
      this.at(this.d.line, `plugin "${this.name}": "${text}" is not an address (":8080", "127.0.0.1:8080" or "[::1]:8080")`);
      return { host: defaultHost, port: defaultPort };
    }
    return hp;
  }

  duration(text: string | undefined, line: number, what: string): number | undefined {
    const ms = text === undefined ? undefined : parseGoDuration(text);
    if (ms === undefined || ms < 0) {
      this.at(line, `plugin "${this.name}": ${what} needs a duration such as "5s" or "500ms", got ${text === undefined ? 'nothing' : `"${text}"`}`);
      return undefined;
    }
    return ms;
  }

  integer(text: string | undefined, line: number, what: string, min: number, max: number): number | undefined {
    const v = text === undefined || !/^\d+$/.test(text) ? NaN : Number(text);
    if (!(v >= min && v <= max)) {
      this.at(line, `plugin "${this.name}": ${what} must be a whole number from ${min} to ${max}, got ${text === undefined ? 'nothing' : `"${text}"`}`);
      return undefined;
    }
    return v;
  }

  zones(texts: string[], line: number): string[] {
    const out: string[] = [];
    for (const t of texts) {
      const z = t.includes('/') ? reverseZone(t) : normalizeZone(t);
      if (z === undefined) this.at(line, `plugin "${this.name}": "${t}" is not a zone name`);
      else out.push(z);
    }
    return out;
  }
}

function readBind(p: PluginReader, server: ServerBlockConfig): void {
  p.options({});
  if (p.args.length === 0) p.at(p.d.line, 'plugin "bind" needs at least one address');
  for (const a of p.args) {
    if (isIP(a) === 0) p.at(p.d.line, `plugin "bind": "${a}" is not an IP address (interface names and "except" are not supported by Tapir)`);
    else if (!server.bind.includes(a)) server.bind.push(a);
  }
}

function readHealth(p: PluginReader): HealthConfig {
  p.maxArgs(1);
  const health: HealthConfig = { address: p.address(0, 8080), lameduckMs: 0 };
  p.options({
    lameduck: (args, line) => {
      if (args.length !== 1) p.at(line, 'plugin "health": lameduck takes one duration, such as "5s"');
      health.lameduckMs = p.duration(args[0], line, 'lameduck') ?? 0;
    },
  });
  return health;
}

function readLog(p: PluginReader): LogConfig {
  const args = p.args;
  const log: LogConfig = { names: [''], format: COMMON_LOG_FORMAT, classes: ['all'] };
  // `log [NAMES...] [FORMAT]`: the format is the one argument with a placeholder.
  const last = args[args.length - 1];
  let names = args;
  if (last !== undefined && (last.includes('{') || last === '{common}' || last === '{combined}')) {
    names = args.slice(0, -1);
    log.format = last.replaceAll('{common}', COMMON_LOG_FORMAT).replaceAll('{combined}', COMBINED_LOG_FORMAT);
    for (const m of log.format.matchAll(/\{([^}]*)\}/g)) {
      if (!LOG_PLACEHOLDERS.includes(m[1]!)) p.at(p.d.line, `plugin "log": placeholder {${m[1]}} is not supported by Tapir (supported: ${LOG_PLACEHOLDERS.map((x) => `{${x}}`).join(' ')})`);
    }
  }
  if (names.length > 0) log.names = p.zones(names, p.d.line);
  p.options({
    class: (cls, line) => {
      const classes: LogClass[] = [];
      for (const c of cls) {
        if (c === 'all' || c === 'denial' || c === 'error' || c === 'success') classes.push(c);
        else p.at(line, `plugin "log": class "${c}" is not one of all, denial, error, success`);
      }
      if (cls.length === 0) p.at(line, 'plugin "log": class needs at least one of all, denial, error, success');
      log.classes = classes;
    },
  });
  return log;
}

function readKubernetes(p: PluginReader, blockZones: string[]): KubernetesConfig {
  const zones = p.args.length > 0 ? p.zones(p.args, p.d.line) : [...blockZones];
  // CoreDNS's defaults (plugin/kubernetes README): ttl 5, pods disabled.
  const k: KubernetesConfig = { zones, ttl: 5, pods: 'disabled', fallthrough: null, endpointPodNames: false, namespaces: [] };
  for (const z of zones) {
    if (!blockZones.some((b) => b === '' || z === b || z.endsWith(`.${b}`))) p.at(p.d.line, `plugin "kubernetes": zone "${z}" is not inside the server block's zones (${blockZones.map((b) => b === '' ? '.' : b).join(' ')})`);
  }
  p.options({
    pods: (args, line) => {
      if (args.length === 1 && (args[0] === 'disabled' || args[0] === 'insecure')) k.pods = args[0];
      else if (args[0] === 'verified') p.at(line, 'plugin "kubernetes": "pods verified" is not supported by Tapir (use "pods insecure" or "pods disabled")');
      else p.at(line, 'plugin "kubernetes": pods takes one of disabled, insecure');
    },
    fallthrough: (args, line) => { k.fallthrough = p.zones(args, line); },
    ttl: (args, line) => { k.ttl = p.integer(args[0], line, 'ttl', 0, 3600) ?? k.ttl; if (args.length > 1) p.at(line, 'plugin "kubernetes": ttl takes one number of seconds'); },
    namespaces: (args, line) => {
      if (args.length === 0) p.at(line, 'plugin "kubernetes": namespaces needs at least one namespace');
      k.namespaces = args;
    },
    // Where CoreDNS reads the API from: Tapir's view comes from its own source (the
    // agent's, or `tapir dns --manifests/--kubeconfig`), so these connection settings are
    // accepted for the ConfigMap's sake and have no effect (docs/dns.md).
    endpoint: () => {},
    kubeconfig: () => {},
  });
  return k;
}

function readForward(p: PluginReader, readResolvConf: (path: string) => string[]): ForwardConfig {
  const [fromText, ...to] = p.args;
  const f: ForwardConfig = {
    from: '', upstreams: [], except: [], forceTcp: false, preferUdp: false, policy: 'random',
    healthCheckMs: 500, maxFails: 2, expireMs: 10_000, maxConcurrent: 0,
  };
  if (fromText === undefined || to.length === 0) {
    p.at(p.d.line, 'plugin "forward" needs a zone and at least one upstream, such as "forward . /etc/resolv.conf" or "forward . 10.0.0.2:53"');
  } else {
    f.from = p.zones([fromText], p.d.line)[0] ?? '';
    for (const t of to) {
      if (/^[a-z0-9+.-]+:\/\//i.test(t) && !t.startsWith('dns://')) { p.at(p.d.line, `plugin "forward": "${t}": only plain DNS upstreams are supported by Tapir (no tls:// or https://)`); continue; }
      const u = parseUpstream(t);
      if (u !== undefined) { f.upstreams.push(u); continue; }
      if (!t.includes('/')) { p.at(p.d.line, `plugin "forward": "${t}" is neither an IP address (with an optional :port) nor a resolv.conf file`); continue; }
      let servers: string[];
      try {
        servers = readResolvConf(t);
      } catch (err) {
        p.at(p.d.line, `plugin "forward": cannot read ${t}: ${(err as Error).message}`);
        continue;
      }
      const before = f.upstreams.length;
      for (const s of servers) {
        const su = isIP(s) !== 0 ? { address: s, port: DEFAULT_DNS_PORT } : undefined;
        if (su !== undefined) f.upstreams.push(su);
      }
      if (f.upstreams.length === before) p.at(p.d.line, `plugin "forward": ${t} names no nameserver`);
    }
    if (f.upstreams.length > 15) p.at(p.d.line, `plugin "forward": at most 15 upstreams, got ${f.upstreams.length}`);
  }
  p.options({
    except: (args, line) => { f.except = p.zones(args, line); },
    force_tcp: () => { f.forceTcp = true; },
    prefer_udp: () => { f.preferUdp = true; },
    policy: (args, line) => {
      const v = args[0];
      if (args.length === 1 && (v === 'random' || v === 'round_robin' || v === 'sequential')) f.policy = v;
      else p.at(line, 'plugin "forward": policy takes one of random, round_robin, sequential');
    },
    health_check: (args, line) => {
      f.healthCheckMs = p.duration(args[0], line, 'health_check') ?? f.healthCheckMs;
      if (args.length > 1) p.at(line, `plugin "forward": health_check options (${args.slice(1).join(' ')}) are not supported by Tapir`);
    },
    max_fails: (args, line) => { f.maxFails = p.integer(args[0], line, 'max_fails', 0, 1_000_000) ?? f.maxFails; },
    expire: (args, line) => { f.expireMs = p.duration(args[0], line, 'expire') ?? f.expireMs; },
    // The forwarder's bound: query ids of one UDP socket are 16 bits (forward.ts).
    max_concurrent: (args, line) => { f.maxConcurrent = p.integer(args[0], line, 'max_concurrent', 1, 32768) ?? f.maxConcurrent; },
  });
  if (f.forceTcp && f.preferUdp) p.at(p.d.line, 'plugin "forward": force_tcp and prefer_udp cannot both be set');
  return f;
}

function readCache(p: PluginReader, blockZones: string[]): CacheConfig {
  const [ttlText, ...zoneArgs] = p.args;
  const c: CacheConfig = {
    zones: [...blockZones],
    success: { capacity: CACHE_CAPACITY, maxTtl: CACHE_MAX_TTL, minTtl: CACHE_MIN_TTL },
    denial: { capacity: CACHE_CAPACITY, maxTtl: CACHE_MAX_DENIAL_TTL, minTtl: CACHE_MIN_TTL },
    disableSuccess: [], disableDenial: [],
  };
  if (ttlText !== undefined) {
    // `cache [TTL] [ZONES...]`: the first argument is a TTL when it is a number.
    if (/^\d+$/.test(ttlText)) {
      const ttl = p.integer(ttlText, p.d.line, 'TTL', 1, 2_147_483_647) ?? CACHE_MAX_TTL;
      c.success.maxTtl = ttl;
      c.denial.maxTtl = ttl;
      // CoreDNS lowers the minimum along with a smaller maximum.
      c.success.minTtl = Math.min(c.success.minTtl, ttl);
      c.denial.minTtl = Math.min(c.denial.minTtl, ttl);
      if (zoneArgs.length > 0) c.zones = p.zones(zoneArgs, p.d.line);
    } else {
      c.zones = p.zones(p.args, p.d.line);
    }
  }
  const kind = (which: CacheKindConfig, name: string) => (args: string[], line: number) => {
    which.capacity = p.integer(args[0], line, `${name} capacity`, 1, 100_000_000) ?? which.capacity;
    if (args[1] !== undefined) which.maxTtl = p.integer(args[1], line, `${name} TTL`, 0, 2_147_483_647) ?? which.maxTtl;
    if (args[2] !== undefined) which.minTtl = p.integer(args[2], line, `${name} minimum TTL`, 0, 2_147_483_647) ?? which.minTtl;
    if (args.length > 3) p.at(line, `plugin "cache": ${name} takes CAPACITY [TTL] [MINTTL]`);
  };
  p.options({
    success: kind(c.success, 'success'),
    denial: kind(c.denial, 'denial'),
    disable: (args, line) => {
      const [what, ...zones] = args;
      const list = zones.length > 0 ? p.zones(zones, line) : [...c.zones];
      if (what === 'success') c.disableSuccess.push(...list);
      else if (what === 'denial') c.disableDenial.push(...list);
      else p.at(line, 'plugin "cache": disable takes success or denial, then optional zones');
    },
  });
  return c;
}

function readReload(p: PluginReader): { intervalMs: number; jitterMs: number } {
  p.maxArgs(2);
  p.options({});
  const intervalMs = p.args[0] === undefined ? 30_000 : p.duration(p.args[0], p.d.line, 'the interval') ?? 30_000;
  const jitterMs = p.args[1] === undefined ? 15_000 : p.duration(p.args[1], p.d.line, 'the jitter') ?? 15_000;
  // CoreDNS's limits: at least 2 s between checks, the jitter at most half the interval.
  if (intervalMs < 2000) p.at(p.d.line, 'plugin "reload": the interval must be at least 2s');
  if (jitterMs < 1000 && p.args[1] !== undefined) p.at(p.d.line, 'plugin "reload": the jitter must be at least 1s');
  return { intervalMs, jitterMs: Math.min(jitterMs, intervalMs / 2) };
}

function readLoadbalance(p: PluginReader): void {
  p.options({});
  const policy = p.args[0] ?? 'round_robin';
  if (policy !== 'round_robin') p.at(p.d.line, `plugin "loadbalance": policy "${policy}" is not supported by Tapir (only round_robin)`);
  p.maxArgs(1);
}

// kube-proxy's own configuration file (KubeProxyConfiguration, kubeproxy.config.k8s.io/
// v1alpha1, staging/src/k8s.io/kube-proxy/config/v1alpha1/types.go), read so that the
// ConfigMap of a cluster's kube-proxy can be handed to Tapir unchanged. Every field of
// the v1alpha1 type is known here: the ones Tapir honours are read and checked; those
// that mean nothing for a data plane without iptables, IPVS or Windows (masquerade bits,
// the IPVS scheduler, winkernel) are accepted and listed in `ignored`, which the agent
// logs once; a field the type does not have is an error with its path, as kube-proxy's
// strict decoding makes it. docs/agent-config.md says what each field does in Tapir.
import { availableParallelism } from 'node:os';
import { formatGoDuration } from '../config/duration.ts';
import { Fields, isMapping } from '../config/fields.ts';
import type { ConntrackTimeouts } from '../tables/tcp-state.ts';
import { parseCidr, parseCidr6, parseIpv4, type Cidr, type Cidr6 } from '../wire/address.ts';

export const KUBE_PROXY_API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';
export const KUBE_PROXY_KIND = 'KubeProxyConfiguration';

/** One entry of nodePortAddresses: a prefix, or a keyword kube-proxy expands into prefixes. */
export type NodePortAddress =
  | { kind: 'cidr'; cidr: Cidr }
  /** The Node's primary address (Tapir: the underlay address). */
  | { kind: 'primary' }
  /** Localhost node ports, as iptables mode's (Tapir: 127.0.0.1, with iptables.localhostNodePorts). */
  | { kind: 'localhost' }
  /** 0.0.0.0/0: every address of the node (and 127.0.0.1, with iptables.localhostNodePorts). */
  | { kind: 'all' };

/** An IPv4 address and port to listen on; host '0.0.0.0' = every address. */
export interface BindAddress {
  host: string;
  port: number;
}

export interface ClientConnection {
  /** '' = in-cluster configuration (service-account token, KUBERNETES_SERVICE_HOST/PORT). */
  kubeconfig: string;
  qps: number;
  burst: number;
  contentType: string;
  acceptContentTypes: string;
}

/** What the agent takes from a KubeProxyConfiguration, defaults applied (kube-proxy's, unless said). */
export interface KubeProxySettings {
  /** The Node's name ('' = unset: the Tapir document's nodeName, NODE_NAME, or the hostname). */
  hostnameOverride: string;
  /** The node's primary IPv4 address (undefined = unset or 0.0.0.0). */
  bindAddress: number | undefined;
  /** /healthz and /livez; null = not served (healthzBindAddress ""). Default 0.0.0.0:10256. */
  healthzBindAddress: BindAddress | null;
  /** /metrics, /proxyMode, /configz; null = not served. Default 127.0.0.1:10249. */
  metricsBindAddress: BindAddress | null;
  /** A failure to listen on either address ends the agent (default: logged, the agent runs on). */
  bindAddressHardFail: boolean;
  /** The pods' IPv4 range (undefined = unset). */
  clusterCIDR: Cidr | undefined;
  /** The IPv6 half of a dual-stack clusterCIDR "v4,v6" (undefined = none): the agent's clusterCIDRv6. */
  clusterCIDRv6?: Cidr6 | undefined;
  /** undefined = unset (as iptables mode: the underlay address and, with localhostNodePorts, 127.0.0.1). */
  nodePortAddresses: NodePortAddress[] | undefined;
  /** iptables.localhostNodePorts: node ports on 127.0.0.1 when nodePortAddresses allows it (default true). */
  localhostNodePorts: boolean;
  conntrack: {
    /** Entries per CPU core; 0 = leave Tapir's table size as configured (and ignore min). */
    maxPerCore: number;
    min: number;
    /** Seconds, only those the document sets (others keep DEFAULT_TIMEOUTS). */
    timeouts: Partial<ConntrackTimeouts>;
    tcpBeLiberal: boolean;
  };
  /** How often the Kubernetes source relists everything (informers' resync). Default 15 min. */
  configSyncPeriodMs: number;
  /** The longest time between two full syncs (undefined = unset: Tapir's 30 s). */
  syncPeriodMs: number | undefined;
  /** The shortest time between two syncs (undefined = unset or 0: Tapir's 100 ms). */
  minSyncPeriodMs: number | undefined;
  detectLocalMode: string;
  /** As written ('' = unset); any value but 'tapir' is reported as ignored: Tapir is the proxy. */
  mode: string;
  featureGates: Record<string, boolean>;
  clientConnection: ClientConnection;
  /** logging.verbosity (klog's -v); undefined = unset. */
  verbosity: number | undefined;
  /** logging.format: 'text' or 'json'; '' = unset. */
  logFormat: '' | 'text' | 'json';
  /** Paths of fields that are set but mean nothing for Tapir, e.g. "ipvs.scheduler". */
  ignored: string[];
}

const DEFAULT_HEALTHZ: BindAddress = { host: '0.0.0.0', port: 10256 };
const DEFAULT_METRICS: BindAddress = { host: '127.0.0.1', port: 10249 };
const DEFAULT_CONFIG_SYNC_PERIOD_MS = 15 * 60_000;
/** kube-proxy's conntrack defaults (pkg/proxy/apis/config/v1alpha1/defaults.go). */
const DEFAULT_MAX_PER_CORE = 32768;
const DEFAULT_CONNTRACK_MIN = 131072;

export const PROXY_MODES = ['', 'tapir', 'iptables', 'ipvs', 'nftables', 'kernelspace'] as const;
export const LOCAL_MODES = ['', 'ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix'] as const;

/** The defaults, as if the document were empty: what an agent without a KubeProxyConfiguration uses. */
export function defaultKubeProxySettings(): KubeProxySettings {
  return {
    hostnameOverride: '',
    bindAddress: undefined,
    healthzBindAddress: { ...DEFAULT_HEALTHZ },
    metricsBindAddress: { ...DEFAULT_METRICS },
    bindAddressHardFail: false,
    clusterCIDR: undefined,
    nodePortAddresses: undefined,
    localhostNodePorts: true,
    conntrack: { maxPerCore: DEFAULT_MAX_PER_CORE, min: DEFAULT_CONNTRACK_MIN, timeouts: {}, tcpBeLiberal: false },
    configSyncPeriodMs: DEFAULT_CONFIG_SYNC_PERIOD_MS,
    syncPeriodMs: undefined,
    minSyncPeriodMs: undefined,
    detectLocalMode: '',
    mode: '',
    featureGates: {},
    clientConnection: { kubeconfig: '', qps: 5, burst: 10, contentType: 'application/vnd.kubernetes.protobuf', acceptContentTypes: '' },
    verbosity: undefined,
    logFormat: '',
    ignored: [],
  };
}

const TOP = [
  'apiVersion', 'kind', 'featureGates', 'clientConnection', 'logging', 'hostnameOverride', 'bindAddress',
  'healthzBindAddress', 'metricsBindAddress', 'bindAddressHardFail', 'enableProfiling', 'showHiddenMetricsForVersion',
  'mode', 'iptables', 'ipvs', 'nftables', 'winkernel', 'detectLocalMode', 'detectLocal', 'clusterCIDR',
  'nodePortAddresses', 'oomScoreAdj', 'conntrack', 'configSyncPeriod', 'portRange', 'windowsRunAsService',
  // v1alpha2 moved the sync periods to the top; accepted here too, and they win.
  'syncPeriod', 'minSyncPeriod',
] as const;
/** Top-level fields accepted and ignored: a data plane of its own has no use for them. */
const IGNORED_TOP = ['enableProfiling', 'showHiddenMetricsForVersion', 'oomScoreAdj', 'portRange', 'windowsRunAsService'];

const IPTABLES = ['masqueradeBit', 'masqueradeAll', 'localhostNodePorts', 'snatNodeInternalIP', 'syncPeriod', 'minSyncPeriod'] as const;
const IPVS = ['syncPeriod', 'minSyncPeriod', 'scheduler', 'excludeCIDRs', 'strictARP', 'tcpTimeout', 'tcpFinTimeout', 'udpTimeout'] as const;
const NFTABLES = ['masqueradeBit', 'masqueradeAll', 'syncPeriod', 'minSyncPeriod'] as const;
const WINKERNEL = ['networkName', 'sourceVip', 'enableDSR', 'rootHnsEndpointName', 'forwardHealthCheckVip'] as const;
const DETECT_LOCAL = ['bridgeInterface', 'interfaceNamePrefix'] as const;
const CONNTRACK = ['maxPerCore', 'min', 'tcpEstablishedTimeout', 'tcpCloseWaitTimeout', 'tcpBeLiberal', 'udpTimeout', 'udpStreamTimeout'] as const;
const CLIENT = ['kubeconfig', 'acceptContentTypes', 'contentType', 'qps', 'burst'] as const;
const LOGGING = ['format', 'flushFrequency', 'verbosity', 'vmodule', 'options'] as const;

/**
 * Reads one KubeProxyConfiguration document (apiVersion and kind already checked by the
 * caller). Problems go to `doc.problems`, each with its path.
 */
export function readKubeProxyConfiguration(doc: Fields): KubeProxySettings {
  const s = defaultKubeProxySettings();
  doc.rejectUnknown(TOP);
  const ignore = (f: Fields, key: string): void => {
    if (isSet(f.value[key])) s.ignored.push(f.pathOf(key));
  };
  for (const key of IGNORED_TOP) ignore(doc, key);

  s.hostnameOverride = doc.string('hostnameOverride').trim().toLowerCase();
  if (doc.has('bindAddress')) {
    const text = doc.string('bindAddress');
    const ip = parseIpv4(text);
    if (ip === undefined) {
      if (typeof doc.value.bindAddress === 'string') doc.fail('bindAddress', text.includes(':') ? `${JSON.stringify(text)} is an IPv6 address; Tapir supports IPv4 only` : `${JSON.stringify(text)} is not an IPv4 address`);
    } else if (ip !== 0) {
      s.bindAddress = ip;
    }
  }
  s.healthzBindAddress = bindAddress(doc, 'healthzBindAddress', DEFAULT_HEALTHZ);
  s.metricsBindAddress = bindAddress(doc, 'metricsBindAddress', DEFAULT_METRICS);
  s.bindAddressHardFail = doc.bool('bindAddressHardFail', false);

  s.mode = oneOf(doc, 'mode', PROXY_MODES);
  if (s.mode !== '' && s.mode !== 'tapir') s.ignored.push(`mode (${s.mode}: Tapir is the proxy)`);
  s.detectLocalMode = oneOf(doc, 'detectLocalMode', LOCAL_MODES);
  const detectLocal = section(doc, 'detectLocal', DETECT_LOCAL);
  if (detectLocal !== undefined) for (const key of DETECT_LOCAL) ignore(detectLocal, key);

  if (doc.has('clusterCIDR')) s.clusterCIDR = clusterCIDR(doc, s);
  if (doc.has('nodePortAddresses')) s.nodePortAddresses = nodePortAddresses(doc);

  const gates = doc.map('featureGates');
  if (gates !== undefined) {
    for (const [name, value] of Object.entries(gates.value)) {
      if (typeof value !== 'boolean') gates.fail(name, `must be true or false, not ${JSON.stringify(value)}`);
      else {
        s.featureGates[name] = value;
        // Tapir has no feature gates of kube-proxy's: each one set is reported.
        s.ignored.push(gates.pathOf(name));
      }
    }
  }

  const client = section(doc, 'clientConnection', CLIENT);
  if (client !== undefined) {
    const c = s.clientConnection;
    c.kubeconfig = client.string('kubeconfig');
    c.contentType = client.string('contentType') || c.contentType;
    c.acceptContentTypes = client.string('acceptContentTypes');
    c.qps = number(client, 'qps', c.qps);
    c.burst = client.int('burst', 0, 1_000_000, c.burst);
  }

  const logging = section(doc, 'logging', LOGGING);
  if (logging !== undefined) {
    const format = logging.string('format');
    if (format !== '' && format !== 'text' && format !== 'json') logging.fail('format', `${JSON.stringify(format)} is not one of text, json`);
    else s.logFormat = format;
    if (logging.has('verbosity')) s.verbosity = logging.int('verbosity', 0, 10, 0);
    for (const key of ['flushFrequency', 'vmodule', 'options']) ignore(logging, key);
  }

  // The sync periods: v1alpha2's top-level fields first, else the block of the mode a
  // reused ConfigMap was written for (iptables when it names none, as kube-proxy's
  // default on Linux). Zero means "the default", as kube-proxy's defaulting makes it.
  const iptables = section(doc, 'iptables', IPTABLES);
  const ipvs = section(doc, 'ipvs', IPVS);
  const nftables = section(doc, 'nftables', NFTABLES);
  const periodBlock = s.mode === 'ipvs' ? ipvs : s.mode === 'nftables' ? nftables : iptables;
  for (const block of [iptables, ipvs, nftables]) {
    if (block === undefined) continue;
    const sync = block.duration('syncPeriod');
    const min = block.duration('minSyncPeriod');
    if (block !== periodBlock || doc.has('syncPeriod')) ignore(block, 'syncPeriod');
    else if (sync !== undefined && sync > 0) s.syncPeriodMs = sync;
    if (block !== periodBlock || doc.has('minSyncPeriod')) ignore(block, 'minSyncPeriod');
    else if (min !== undefined && min > 0) s.minSyncPeriodMs = min;
  }
  const topSync = doc.duration('syncPeriod');
  if (topSync !== undefined && topSync > 0) s.syncPeriodMs = topSync;
  const topMin = doc.duration('minSyncPeriod');
  if (topMin !== undefined && topMin > 0) s.minSyncPeriodMs = topMin;
  if (s.syncPeriodMs !== undefined && s.minSyncPeriodMs !== undefined && s.minSyncPeriodMs > s.syncPeriodMs) {
    doc.fail(doc.has('minSyncPeriod') ? 'minSyncPeriod' : 'iptables.minSyncPeriod', `${formatGoDuration(s.minSyncPeriodMs)} is longer than the sync period ${formatGoDuration(s.syncPeriodMs)}`);
  }
  if (iptables !== undefined) {
    s.localhostNodePorts = iptables.bool('localhostNodePorts', true);
    for (const key of ['masqueradeBit', 'masqueradeAll', 'snatNodeInternalIP']) ignore(iptables, key);
  }
  if (ipvs !== undefined) for (const key of ['scheduler', 'excludeCIDRs', 'strictARP', 'tcpTimeout', 'tcpFinTimeout', 'udpTimeout']) ignore(ipvs, key);
  if (nftables !== undefined) for (const key of ['masqueradeBit', 'masqueradeAll']) ignore(nftables, key);
  const winkernel = section(doc, 'winkernel', WINKERNEL);
  if (winkernel !== undefined) for (const key of WINKERNEL) ignore(winkernel, key);

  const conntrack = section(doc, 'conntrack', CONNTRACK);
  if (conntrack !== undefined) {
    const c = s.conntrack;
    c.maxPerCore = conntrack.int('maxPerCore', 0, 1 << 24, c.maxPerCore);
    c.min = conntrack.int('min', 0, 1 << 24, c.min);
    c.tcpBeLiberal = conntrack.bool('tcpBeLiberal', false);
    // kube-proxy leaves a timeout alone when it is 0 or unset ("must be greater than 0 to set").
    const timeout = (key: string, field: keyof ConntrackTimeouts): void => {
      const ms = conntrack.duration(key);
      if (ms === undefined || ms === 0) return;
      if (ms < 1000) conntrack.fail(key, `${formatGoDuration(ms)} is shorter than a second, the resolution of Tapir's conntrack`);
      else c.timeouts[field] = ms / 1000;
    };
    timeout('tcpEstablishedTimeout', 'tcpEstablished');
    timeout('tcpCloseWaitTimeout', 'tcpCloseWait');
    timeout('udpTimeout', 'udp');
    timeout('udpStreamTimeout', 'udpStream');
  }
  const configSync = doc.duration('configSyncPeriod');
  if (configSync !== undefined) {
    if (configSync === 0) doc.fail('configSyncPeriod', 'must be greater than 0');
    else s.configSyncPeriodMs = configSync;
  }
  return s;
}

/**
 * kube-proxy's conntrack sizing (pkg/proxy/conntrack: max(min, maxPerCore * cores)),
 * bounded by what Tapir's table holds; `fallback` when maxPerCore is 0 ("leave as is").
 */
export function conntrackCapacity(s: KubeProxySettings['conntrack'], fallback: number, cores = availableParallelism()): number {
  if (s.maxPerCore === 0) return fallback;
  return Math.min(1 << 24, Math.max(s.min, s.maxPerCore * cores));
}

/** A value that says something: not null, '', false, 0, "0s", [] or {} (kubeadm writes those for every unused field). */
function isSet(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === false || v === 0 || v === '0s' || v === '0') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isMapping(v)) return Object.keys(v).length > 0;
  return true;
}

/** A string of `allowed` ('' among them: unset); '' when absent or wrong. */
function oneOf(doc: Fields, key: string, allowed: readonly string[]): string {
  const v = doc.string(key);
  if (allowed.includes(v)) return v;
  doc.fail(key, `${JSON.stringify(v)} is not one of ${allowed.filter((a) => a !== '').join(', ')} (or unset)`);
  return '';
}

function section(doc: Fields, key: string, known: readonly string[]): Fields | undefined {
  const f = doc.map(key);
  if (f === undefined || !isMapping(doc.value[key])) return undefined;
  f.rejectUnknown(known);
  return f;
}

function number(f: Fields, key: string, fallback: number): number {
  const v = f.value[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !(v >= 0)) {
    f.fail(key, `must be a number of at least 0, not ${JSON.stringify(v)}`);
    return fallback;
  }
  return v;
}

/** "IP:port"; '' turns the server off; absent = `fallback`. */
function bindAddress(doc: Fields, key: string, fallback: BindAddress): BindAddress | null {
  if (!doc.has(key)) return { ...fallback };
  const text = doc.string(key);
  if (typeof doc.value[key] !== 'string') return { ...fallback };
  if (text === '') return null;
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || parseIpv4(m[1]!) === undefined || !(port >= 1 && port <= 65535)) {
    doc.fail(key, text.startsWith('[') ? `${JSON.stringify(text)} is an IPv6 address; Tapir supports IPv4 only` : `${JSON.stringify(text)} is not an IPv4 address and port such as "${fallback.host}:${fallback.port}" (or "" to serve nothing)`);
    return { ...fallback };
  }
  return { host: m[1]!, port };
}

/** One IPv4 prefix, or a dual-stack pair "v4,v6" whose IPv6 half becomes `clusterCIDRv6`. */
function clusterCIDR(doc: Fields, s: KubeProxySettings): Cidr | undefined {
  const text = doc.string('clusterCIDR');
  if (typeof doc.value.clusterCIDR !== 'string') return undefined;
  const parts = text.split(',').map((p) => p.trim()).filter((p) => p !== '');
  const v4 = parts.filter((p) => !p.includes(':'));
  const v6 = parts.filter((p) => p.includes(':'));
  if (v6.length > 1) doc.fail('clusterCIDR', `${JSON.stringify(text)} has ${v6.length} IPv6 prefixes; give one (a dual-stack pair "v4,v6")`);
  else if (v6.length === 1) {
    const cidr6 = parseCidr6(v6[0]!, true);
    if (cidr6 === undefined) doc.fail('clusterCIDR', `${JSON.stringify(v6[0])} is not an IPv6 network such as "fd00:10:244::/56" (no host bits)`);
    else s.clusterCIDRv6 = cidr6;
  }
  if (v4.length !== 1) {
    doc.fail('clusterCIDR', v4.length === 0 ? `${JSON.stringify(text)} has no IPv4 prefix; Tapir supports IPv4 only` : `${JSON.stringify(text)} has ${v4.length} IPv4 prefixes; give one (or a dual-stack pair)`);
    return undefined;
  }
  const cidr = parseCidr(v4[0]!);
  if (cidr === undefined) doc.fail('clusterCIDR', `${JSON.stringify(v4[0])} is not an IPv4 prefix such as "10.244.0.0/16"`);
  return cidr;
}

function nodePortAddresses(doc: Fields): NodePortAddress[] {
  const out: NodePortAddress[] = [];
  for (const item of doc.list('nodePortAddresses')) {
    const v = item.value;
    if (v === 'primary' || v === 'localhost' || v === 'all') {
      out.push({ kind: v });
      continue;
    }
    if (typeof v !== 'string') {
      doc.problems.add(item.path, `must be a string (a prefix or primary, localhost, all), not ${JSON.stringify(v)}`);
      continue;
    }
    const cidr = parseCidr(v);
    if (cidr === undefined) {
      doc.problems.add(item.path, v.includes(':') ? `${JSON.stringify(v)} is an IPv6 prefix; Tapir supports IPv4 only` : `${JSON.stringify(v)} is neither an IPv4 prefix such as "172.30.0.0/24" nor one of primary, localhost, all`);
      continue;
    }
    out.push({ kind: 'cidr', cidr });
  }
  return out;
}

/** nodePortAddresses as kube-proxy writes it, for /configz. */
export function formatNodePortAddress(a: NodePortAddress): string {
  return a.kind === 'cidr' ? a.cidr.toString() : a.kind;
}

// A pod's resolv.conf as the kubelet composes it (pkg/kubelet/network/dns/dns.go,
// Configurer.GetPodDNS) and the container runtime writes it (containerd: search,
// nameserver, options lines, in that order). The lab plays the kubelet: its clusterDNS
// is the cluster DNS Service address (10.96.0.10 in the default lab), its clusterDomain
// cluster.local, and its --resolv-conf the node's own resolv.conf, which the lab writes
// for every node namespace (src/lab/network/netns-files.ts).
//
//   ClusterFirst (the default), and ClusterFirstWithHostNet:
//       search <ns>.svc.<zone> svc.<zone> <zone> + the node's search domains
//       nameserver <cluster DNS>
//       options ndots:5                (the node's options are not kept)
//   ClusterFirst with hostNetwork, and Default: the node's resolv.conf
//   None: empty, so only dnsConfig counts
//
// dnsConfig then merges into any of them (nameservers and searches appended without
// duplicates, options by name, a pod's value winning), and the result is cut to the
// kubelet's limits: 3 nameservers, 32 search domains of at most 253 characters and 2048
// characters in all, each cut recorded as the warning the kubelet sends as a
// DNSConfigForming event.
import { MAX_DNS_NAMESERVERS, MAX_DNS_SEARCH_LIST_CHARS, MAX_DNS_SEARCH_PATHS } from '../../k8s/validate-workloads.ts';
import type { DnsPolicy, PodDnsConfig } from '../../k8s/objects.ts';
import { formatResolvConf, type ResolvConf } from '../../dns/resolv-conf.ts';

// The file's shape and its layout are the DNS layer's (containerd's order); the parse
// below is the kubelet's own, which keeps every nameserver for its limit warnings.
export { formatResolvConf, type ResolvConf };

/** What the kubelet is configured with (KubeletConfiguration clusterDNS, clusterDomain, resolvConf). */
export interface KubeletDnsSettings {
  clusterDNS: string[];
  clusterDomain: string;
  /** The node's resolv.conf, parsed (the base of Default and the host part of the search path). */
  hostResolvConf: ResolvConf;
}

/** The fields of a pod the kubelet reads for its DNS (a PodObject's spec has them all). */
export interface PodDnsSpec {
  namespace: string;
  dnsPolicy: DnsPolicy;
  dnsConfig: PodDnsConfig | null;
  hostNetwork: boolean;
}

/** DNS1123SubdomainMaxLength: glibc 2.28 aborts on a longer search domain, so the kubelet drops it. */
const MAX_SEARCH_DOMAIN_LENGTH = 253;
const DEFAULT_OPTIONS = ['ndots:5'];

/**
 * The kubelet's parseResolvConf: `nameserver` lines accumulate, the last `search` and
 * the last `options` line win, search domains lose a trailing dot, `#` lines are comments.
 */
export function parseResolvConf(text: string): ResolvConf {
  const conf: ResolvConf = { nameservers: [], search: [], options: [] };
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed.startsWith('#')) continue;
    const fields = trimmed.split(/\s+/).filter((f) => f !== '');
    if (fields.length === 0) continue;
    if (fields[0] === 'nameserver' && fields.length >= 2) conf.nameservers.push(fields[1]!);
    if (fields[0] === 'search') conf.search = fields.slice(1).map((s) => (s.endsWith('.') ? s.slice(0, -1) : s));
    if (fields[0] === 'options') conf.options = fields.slice(1);
  }
  return conf;
}

/** getPodDNSType: ClusterFirst on the host network falls back to Default. */
function dnsType(pod: PodDnsSpec): 'cluster' | 'host' | 'none' {
  switch (pod.dnsPolicy) {
    case 'None': return 'none';
    case 'ClusterFirstWithHostNet': return 'cluster';
    case 'ClusterFirst': return pod.hostNetwork ? 'host' : 'cluster';
    case 'Default': return 'host';
  }
}

function unique(list: string[]): string[] {
  return [...new Set(list)];
}

/**
 * mergeDNSOptions: "name" or "name:value" entries keyed by name, the pod's replacing the
 * base's. The kubelet's Go map gives them in random order; here the base's come first,
 * in their order, then the pod's new ones, so the file is the same at every start.
 */
function mergeOptions(base: string[], extra: PodDnsConfig['options']): string[] {
  const options = new Map<string, string>();
  for (const option of base) {
    const colon = option.indexOf(':');
    if (colon < 0) options.set(option, '');
    else options.set(option.slice(0, colon), option.slice(colon + 1));
  }
  for (const option of extra) options.set(option.name, option.value ?? '');
  return [...options].map(([name, value]) => (value === '' ? name : `${name}:${value}`));
}

/** GetPodDNS: the pod's resolv.conf and the warnings the kubelet would send as events. */
export function podResolvConf(pod: PodDnsSpec, kubelet: KubeletDnsSettings): { conf: ResolvConf; warnings: string[] } {
  const host = kubelet.hostResolvConf;
  let conf: ResolvConf = { nameservers: [...host.nameservers], search: [...host.search], options: [...host.options] };
  const warnings: string[] = [];
  let type = dnsType(pod);
  if (type === 'none') conf = { nameservers: [], search: [], options: [] };
  if (type === 'cluster' && kubelet.clusterDNS.length === 0) {
    warnings.push(`kubelet does not have ClusterDNS IP configured and cannot create Pod using "${pod.dnsPolicy}" policy. Falling back to "Default" policy.`);
    type = 'host';
  }
  if (type === 'cluster') {
    // The cluster DNS server is the only one: it forwards what it does not answer.
    conf.nameservers = [...kubelet.clusterDNS];
    const zone = kubelet.clusterDomain;
    conf.search = zone === '' ? conf.search : unique([`${pod.namespace}.svc.${zone}`, `svc.${zone}`, zone, ...conf.search]);
    conf.options = [...DEFAULT_OPTIONS];
  }
  if (pod.dnsConfig !== null) {
    conf.nameservers = unique([...conf.nameservers, ...pod.dnsConfig.nameservers]);
    conf.search = unique([...conf.search, ...pod.dnsConfig.searches]);
    conf.options = mergeOptions(conf.options, pod.dnsConfig.options);
  }
  return { conf: fitLimits(conf, warnings), warnings };
}

/** formDNSConfigFitsLimits: what glibc reads, with the kubelet's messages for each cut. */
function fitLimits(conf: ResolvConf, warnings: string[]): ResolvConf {
  let nameservers = conf.nameservers;
  if (nameservers.length > MAX_DNS_NAMESERVERS) {
    nameservers = nameservers.slice(0, MAX_DNS_NAMESERVERS);
    warnings.push(`Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: ${nameservers.join(' ')}`);
  }
  let search = conf.search;
  let cut = false;
  if (search.length > MAX_DNS_SEARCH_PATHS) {
    search = search.slice(0, MAX_DNS_SEARCH_PATHS);
    cut = true;
  }
  const fitting = search.filter((s) => s.length <= MAX_SEARCH_DOMAIN_LENGTH);
  if (fitting.length !== search.length) cut = true;
  search = fitting;
  // Whole domains come off the end until the line fits.
  while (search.join(' ').length > MAX_DNS_SEARCH_LIST_CHARS) {
    search = search.slice(0, -1);
    cut = true;
  }
  if (cut) warnings.push(`Search Line limits were exceeded, some search paths have been omitted, the applied search line is: ${search.join(' ')}`);
  return { nameservers, search, options: conf.options };
}

/**
 * The pod's /etc/hosts as the kubelet manages it (kubelet_pods.go
 * managedHostsFileContent): localhost entries, then the pod's address with its hostname
 * (spec.hostname, else the pod's name cut to 63 characters) and, with a subdomain, its
 * FQDN <hostname>.<subdomain>.<namespace>.svc.<zone>, the name its headless Service gives it.
 */
export function podHostsFile(pod: { name: string; namespace: string; ip: string; hostname: string; subdomain: string }, clusterDomain: string): string {
  // truncatePodHostnameIfNeeded: a longer name is cut and loses trailing "-" and ".".
  const hostname = pod.hostname !== '' ? pod.hostname : pod.name.length <= 63 ? pod.name : pod.name.slice(0, 63).replace(/[-.]+$/, '');
  const domain = pod.subdomain === '' ? '' : `${pod.subdomain}.${pod.namespace}.svc.${clusterDomain}`;
  return [
    '# Kubernetes-managed hosts file.',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
    domain === '' ? `${pod.ip}\t${hostname}` : `${pod.ip}\t${hostname}.${domain}\t${hostname}`,
    '',
  ].join('\n');
}

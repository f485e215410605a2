// kube-proxy's nftables mode, generated from a compiled snapshot as one `nft -f`
// transaction: `table ip kube-proxy` is added (so the delete cannot fail), deleted and
// rebuilt whole, atomically. An IPv6 snapshot gets `table ip6 kube-proxy`, as
// kube-proxy's IPv6 proxier writes it (ipv6_addr keys, `ip6 daddr`, [address]:port). Maps send service IP . protocol . port to per-service
// chains, `numgen random mod N` picks an endpoint, per-endpoint dynamic sets hold
// ClientIP affinity. Names, comments and structure follow pkg/proxy/nftables/proxier.go.
// Unlike kube-proxy (which diffs), a rebuild forgets affinity entries; the lab rebuilds
// only when the services or endpoints changed.
import type { ServiceSnapshot } from '../../model/service-snapshot.ts';
import { MASQUERADE_MARK, planPorts, proxySnapshot4, type PlannedEndpoint, type PlannedPort, type ProxyFamily, type ProxyNode, type ProxySnapshot } from '../proxy-plan.ts';

export const NFT_TABLE = 'kube-proxy';

/** The family's words in nft syntax. */
interface NftFamily {
  /** "ip kube-proxy", "ip6 kube-proxy" */
  table: string;
  /** "ip", "ip6": the address match's protocol keyword. */
  l3: string;
  addrType: string;
}

export function nftFamily(family: ProxyFamily): NftFamily {
  return family === 4 ? { table: `ip ${NFT_TABLE}`, l3: 'ip', addrType: 'ipv4_addr' } : { table: `ip6 ${NFT_TABLE}`, l3: 'ip6', addrType: 'ipv6_addr' };
}

/** A ServiceSnapshot (IPv4, `table ip`) or one family's ProxySnapshot (IPv6: `table ip6`). */
export function nftablesRules(snapshot: ServiceSnapshot | ProxySnapshot, node: ProxyNode): string {
  const proxied = 'family' in snapshot ? snapshot : proxySnapshot4(snapshot);
  const f = nftFamily(proxied.family);
  const T = f.table;
  const out: string[] = [
    `add table ${T} { comment "rules for kube-proxy" ; }`,
    `delete table ${T}`,
    `add table ${T} { comment "rules for kube-proxy" ; }`,
    '',
    `add set ${T} cluster-ips { type ${f.addrType} ; comment "Active ClusterIPs" ; }`,
    `add set ${T} nodeport-ips { type ${f.addrType} ; comment "IPs that accept NodePort traffic" ; }`,
    `add map ${T} firewall-ips { type ${f.addrType} . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }`,
    `add map ${T} no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }`,
    `add map ${T} no-endpoint-services { type ${f.addrType} . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }`,
    `add map ${T} service-ips { type ${f.addrType} . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`,
    `add map ${T} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`,
    '',
    `add chain ${T} cluster-ips-check`,
    // Before DNAT (priority -110 < dstnat -100): the firewall sees the original destination.
    `add chain ${T} filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }`,
    `add chain ${T} filter-output-pre-dnat { type filter hook output priority -110 ; }`,
    `add chain ${T} filter-forward { type filter hook forward priority 0 ; }`,
    `add chain ${T} filter-input { type filter hook input priority 0 ; }`,
    `add chain ${T} filter-output { type filter hook output priority 0 ; }`,
    `add chain ${T} firewall-check`,
    `add chain ${T} mark-for-masquerade`,
    `add chain ${T} masquerading`,
    `add chain ${T} nat-output { type nat hook output priority -100 ; }`,
    `add chain ${T} nat-postrouting { type nat hook postrouting priority 100 ; }`,
    `add chain ${T} nat-prerouting { type nat hook prerouting priority -100 ; }`,
    `add chain ${T} nodeport-endpoints-check`,
    `add chain ${T} reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }`,
    `add chain ${T} services`,
    `add chain ${T} service-endpoints-check`,
    '',
    `add rule ${T} cluster-ips-check ${f.l3} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`,
    `add rule ${T} cluster-ips-check ${f.l3} daddr { ${node.serviceCIDR} } drop comment "Drop traffic to unallocated ClusterIPs"`,
    `add rule ${T} filter-prerouting-pre-dnat ct state new jump firewall-check`,
    `add rule ${T} filter-forward ct state new jump service-endpoints-check`,
    `add rule ${T} filter-forward ct state new jump cluster-ips-check`,
    `add rule ${T} filter-input ct state new jump nodeport-endpoints-check`,
    `add rule ${T} filter-input ct state new jump service-endpoints-check`,
    `add rule ${T} filter-output ct state new jump service-endpoints-check`,
    `add rule ${T} filter-output-pre-dnat ct state new jump firewall-check`,
    `add rule ${T} filter-output ct state new jump cluster-ips-check`,
    `add rule ${T} firewall-check ${f.l3} daddr . meta l4proto . th dport vmap @firewall-ips`,
    `add rule ${T} mark-for-masquerade mark set mark or ${MASQUERADE_MARK}`,
    `add rule ${T} masquerading mark and ${MASQUERADE_MARK} == 0 return`,
    `add rule ${T} masquerading mark set mark xor ${MASQUERADE_MARK}`,
    `add rule ${T} masquerading masquerade fully-random`,
    `add rule ${T} nat-output jump services`,
    `add rule ${T} nat-postrouting jump masquerading`,
    `add rule ${T} nat-prerouting jump services`,
    `add rule ${T} nodeport-endpoints-check ${f.l3} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports`,
    `add rule ${T} reject-chain reject`,
    `add rule ${T} services ${f.l3} daddr . meta l4proto . th dport vmap @service-ips`,
    `add rule ${T} services ${f.l3} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports`,
    `add rule ${T} service-endpoints-check ${f.l3} daddr . meta l4proto . th dport vmap @no-endpoint-services`,
  ];
  for (const address of proxied.nodePortAddresses) out.push(`add element ${T} nodeport-ips { ${address} }`);
  for (const port of planPorts(proxied)) out.push('', `# ${port.portName} ${port.protocol}`, ...servicePort(port, node));
  return `${out.join('\n')}\n`;
}

function servicePort(port: PlannedPort, node: ProxyNode): string[] {
  const { spec, names, protocol } = port;
  const f = nftFamily(port.family);
  const T = f.table;
  // Within one transaction a chain must exist before a rule or map element names it.
  const declarations: string[] = [];
  const rules: string[] = [];
  const elements: string[] = [];
  const chain = (name: string): void => { declarations.push(`add chain ${T} ${name}`); };
  const rule = (name: string, text: string): void => { rules.push(`add rule ${T} ${name} ${text}`); };
  const element = (map: string, text: string): void => { elements.push(`add element ${T} ${map} { ${text} }`); };
  const external = port.hasExternalEndpoints && port.externallyAccessible;
  const internalChain = spec.internalLocal ? names.nftLocal : names.nftService;
  const usesCluster = (port.hasInternalEndpoints && !spec.internalLocal) || (external && (!spec.externalLocal || port.clusterEndpoints.length > 0));
  const usesLocal = (port.hasInternalEndpoints && spec.internalLocal) || (external && spec.externalLocal);
  const affinity = spec.affinityTimeoutSeconds;

  const endpoints = new Map<string, PlannedEndpoint>();
  for (const e of [...(usesCluster ? port.clusterEndpoints : []), ...(usesLocal ? port.localEndpoints : [])]) endpoints.set(e.nftEndpointChain, e);
  if (affinity > 0) {
    for (const e of endpoints.values()) declarations.push(`add set ${T} ${e.nftAffinitySet} { type ${f.addrType} ; flags dynamic,timeout ; timeout ${affinity}s ; }`);
  }
  const balance = (name: string, list: PlannedEndpoint[]): void => {
    if (affinity > 0) for (const e of list) rule(name, `${f.l3} saddr @${e.nftAffinitySet} goto ${e.nftEndpointChain}`);
    rule(name, `numgen random mod ${list.length} vmap { ${list.map((e, i) => `${i} : goto ${e.nftEndpointChain}`).join(' , ')} }`);
  };
  if (usesCluster && port.clusterEndpoints.length > 0) {
    chain(names.nftService);
    rule(names.nftService, `${f.l3} daddr ${port.clusterIP} ${protocol} dport ${spec.port} ${f.l3} saddr != ${node.clusterCIDR} jump mark-for-masquerade`);
    balance(names.nftService, port.clusterEndpoints);
  }
  if (usesLocal && port.localEndpoints.length > 0) {
    chain(names.nftLocal);
    balance(names.nftLocal, port.localEndpoints);
  }
  if (external) {
    chain(names.nftExternal);
    if (spec.externalLocal) {
      if (port.clusterEndpoints.length > 0) {
        rule(names.nftExternal, `${f.l3} saddr ${node.clusterCIDR} goto ${names.nftService} comment "short-circuit pod traffic"`);
        rule(names.nftExternal, 'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"');
        rule(names.nftExternal, `fib saddr type local goto ${names.nftService} comment "short-circuit local traffic"`);
      }
      if (port.localEndpoints.length > 0) rule(names.nftExternal, `goto ${names.nftLocal}`);
    } else {
      rule(names.nftExternal, 'jump mark-for-masquerade');
      rule(names.nftExternal, `goto ${names.nftService}`);
    }
  }
  for (const e of [...endpoints.values()].sort((a, b) => (a.nftEndpointChain < b.nftEndpointChain ? -1 : 1))) {
    chain(e.nftEndpointChain);
    // Hairpin: a pod reaching itself through its service must see the node as the source.
    rule(e.nftEndpointChain, `${f.l3} saddr ${e.ip} jump mark-for-masquerade`);
    if (affinity > 0) rule(e.nftEndpointChain, `update @${e.nftAffinitySet} { ${f.l3} saddr }`);
    rule(e.nftEndpointChain, `meta l4proto ${protocol} dnat to ${e.address}`);
  }
  if (port.loadBalancerIPs.length > 0 && port.sourceRanges.length > 0) {
    chain(names.nftFirewall);
    rule(names.nftFirewall, `${f.l3} saddr != { ${port.sourceRanges.join(', ')} } drop`);
  }

  const key = (ip: string): string => `${ip} . ${protocol} . ${spec.port}`;
  element('cluster-ips', port.clusterIP);
  const comment = `comment "${port.portName}"`;
  if (port.hasInternalEndpoints) element('service-ips', `${key(port.clusterIP)} : goto ${internalChain}`);
  else element('no-endpoint-services', `${key(port.clusterIP)} ${comment} : goto reject-chain`);
  // Reject when nothing serves at all; drop when only the Local policy leaves nothing here.
  const refuse = port.externalDropsForLocalPolicy ? 'drop' : 'goto reject-chain';
  for (const ip of [...port.externalIPs, ...port.loadBalancerIPs]) {
    if (external) element('service-ips', `${key(ip)} : goto ${names.nftExternal}`);
    else element('no-endpoint-services', `${key(ip)} ${comment} : ${refuse}`);
  }
  if (spec.nodePort !== 0) {
    if (external) element('service-nodeports', `${protocol} . ${spec.nodePort} : goto ${names.nftExternal}`);
    else element('no-endpoint-nodeports', `${protocol} . ${spec.nodePort} ${comment} : ${refuse}`);
  }
  if (port.sourceRanges.length > 0) {
    for (const ip of port.loadBalancerIPs) element('firewall-ips', `${key(ip)} : goto ${names.nftFirewall}`);
  }
  return [...declarations, ...rules, ...elements];
}

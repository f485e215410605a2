// kube-proxy's iptables mode, generated from a compiled snapshot as one
// `iptables-restore` input (filter and nat tables, complete: restoring it replaces
// whatever an earlier sync installed, stale chains included). Chain names, comments
// and rule order follow pkg/proxy/iptables/proxier.go so the output reads like a real
// node's `iptables-save`; the golden tests pin it (test/fixtures/lab-rules/). The same
// text for an IPv6 snapshot is `ip6tables-restore` input (kube-proxy's IPv6 proxier:
// the same chains, /128 hosts, [address]:port DNAT targets).
import type { ServiceSnapshot } from '../../model/service-snapshot.ts';
import { hostBits, MASQUERADE_MARK, planPorts, probability, proxySnapshot4, type PlannedEndpoint, type PlannedPort, type ProxyNode, type ProxySnapshot } from '../proxy-plan.ts';

function quote(comment: string): string {
  // iptables-save quotes comments that contain anything but a plain word.
  return /^[A-Za-z0-9_./:-]+$/.test(comment) ? comment : `"${comment}"`;
}

class Chains {
  readonly declared = new Set<string>();
  readonly rules: string[] = [];
  chain(name: string): void { this.declared.add(name); }
  add(chain: string, rule: string): void {
    this.declared.add(chain);
    this.rules.push(`-A ${chain} ${rule}`);
  }
}

/** A ServiceSnapshot (IPv4) or one family's ProxySnapshot (IPv6: ip6tables-restore input). */
export function iptablesRules(snapshot: ServiceSnapshot | ProxySnapshot, node: ProxyNode): string {
  const proxied = 'family' in snapshot ? snapshot : proxySnapshot4(snapshot);
  const bits = hostBits(proxied.family);
  const filter = new Chains();
  const nat = new Chains();
  for (const c of ['KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-SERVICES']) filter.chain(c);
  for (const c of ['KUBE-MARK-MASQ', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-SERVICES']) nat.chain(c);

  const portal = '-m conntrack --ctstate NEW -m comment --comment';
  const jumps = [
    ['INPUT', `${portal} "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL`],
    ['INPUT', '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS'],
    ['INPUT', `${portal} "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`],
    ['FORWARD', `${portal} "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL`],
    ['FORWARD', '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'],
    ['FORWARD', `${portal} "kubernetes service portals" -j KUBE-SERVICES`],
    ['FORWARD', `${portal} "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`],
    ['OUTPUT', `${portal} "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL`],
    ['OUTPUT', `${portal} "kubernetes service portals" -j KUBE-SERVICES`],
  ];
  for (const [chain, rule] of jumps) filter.rules.push(`-A ${chain} ${rule}`);
  filter.add('KUBE-FORWARD', '-m conntrack --ctstate INVALID -j DROP');
  filter.add('KUBE-FORWARD', `-m comment --comment "kubernetes forwarding rules" -m mark --mark ${MASQUERADE_MARK}/${MASQUERADE_MARK} -j ACCEPT`);
  filter.add('KUBE-FORWARD', '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT');

  nat.rules.push('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
  nat.rules.push('-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
  nat.rules.push('-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING');
  nat.add('KUBE-MARK-MASQ', `-j MARK --or-mark ${MASQUERADE_MARK}`);
  nat.add('KUBE-POSTROUTING', `-m mark ! --mark ${MASQUERADE_MARK}/${MASQUERADE_MARK} -j RETURN`);
  // Clear the mark: a packet re-traversing the stack (e.g. after IPsec) is not masqueraded twice.
  nat.add('KUBE-POSTROUTING', `-j MARK --xor-mark ${MASQUERADE_MARK}`);
  nat.add('KUBE-POSTROUTING', '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully');

  for (const port of planPorts(proxied)) servicePort(port, node, filter, nat);

  // Last in KUBE-SERVICES, so node ports never shadow a cluster IP or external IP.
  for (const address of proxied.nodePortAddresses) {
    nat.add('KUBE-SERVICES', `-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d ${address}/${bits} -j KUBE-NODEPORTS`);
  }
  return [...table('filter', ['INPUT', 'FORWARD', 'OUTPUT'], filter), ...table('nat', ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'], nat)].join('\n') + '\n';
}

function table(name: string, builtins: string[], chains: Chains): string[] {
  return [
    `*${name}`,
    ...builtins.map((c) => `:${c} ACCEPT [0:0]`),
    ...[...chains.declared].filter((c) => !builtins.includes(c)).sort().map((c) => `:${c} - [0:0]`),
    ...chains.rules,
    'COMMIT',
  ];
}

function servicePort(port: PlannedPort, node: ProxyNode, filter: Chains, nat: Chains): void {
  const { spec, names, portName, protocol } = port;
  const bits = hostBits(port.family);
  const match = (ip: string): string => `-m ${protocol} -p ${protocol} -d ${ip}/${bits} --dport ${spec.port}`;
  const internalChain = spec.internalLocal ? names.svl : names.svc;
  const noEndpoints = `-m comment --comment ${quote(`${portName} has no endpoints`)}`;
  const noLocal = `-m comment --comment ${quote(`${portName} has no local endpoints`)}`;

  if (port.hasInternalEndpoints) {
    nat.add('KUBE-SERVICES', `-m comment --comment ${quote(`${portName} cluster IP`)} ${match(port.clusterIP)} -j ${internalChain}`);
  } else {
    filter.add('KUBE-SERVICES', `${noEndpoints} ${match(port.clusterIP)} -j REJECT`);
  }

  const external = port.hasExternalEndpoints && port.externallyAccessible;
  // Reject when nothing serves at all; drop when only the Local policy leaves nothing here.
  const refuse = port.externalDropsForLocalPolicy ? `${noLocal}` : `${noEndpoints}`;
  const verdict = port.externalDropsForLocalPolicy ? 'DROP' : 'REJECT';
  for (const ip of port.externalIPs) {
    if (external) nat.add('KUBE-SERVICES', `-m comment --comment ${quote(`${portName} external IP`)} ${match(ip)} -j ${names.ext}`);
    else filter.add('KUBE-EXTERNAL-SERVICES', `${refuse} ${match(ip)} -j ${verdict}`);
  }
  for (const ip of port.loadBalancerIPs) {
    const target = port.sourceRanges.length > 0 ? names.fw : names.ext;
    if (external) nat.add('KUBE-SERVICES', `-m comment --comment ${quote(`${portName} loadbalancer IP`)} ${match(ip)} -j ${target}`);
    else filter.add('KUBE-EXTERNAL-SERVICES', `${refuse} ${match(ip)} -j ${verdict}`);
    if (port.sourceRanges.length > 0) {
      filter.add('KUBE-PROXY-FIREWALL', `-m comment --comment ${quote(`${portName} traffic not accepted by ${names.fw}`)} ${match(ip)} -j DROP`);
    }
  }
  if (spec.nodePort !== 0) {
    if (external) nat.add('KUBE-NODEPORTS', `-m comment --comment ${quote(portName)} -m ${protocol} -p ${protocol} --dport ${spec.nodePort} -j ${names.ext}`);
    else filter.add('KUBE-EXTERNAL-SERVICES', `${refuse} -m addrtype --dst-type LOCAL -m ${protocol} -p ${protocol} --dport ${spec.nodePort} -j ${verdict}`);
  }
  if (spec.healthCheckNodePort !== 0) {
    filter.add('KUBE-NODEPORTS', `-m comment --comment ${quote(`${portName} health check node port`)} -m tcp -p tcp --dport ${spec.healthCheckNodePort} -j ACCEPT`);
  }

  if (port.loadBalancerIPs.length > 0 && port.sourceRanges.length > 0 && external) {
    for (const range of port.sourceRanges) {
      nat.add(names.fw, `-m comment --comment ${quote(`${portName} loadbalancer IP`)} -s ${range} -j ${names.ext}`);
    }
    nat.add(names.fw, `-m comment --comment ${quote(`other traffic to ${portName} will be dropped by KUBE-PROXY-FIREWALL`)}`);
  }

  if (external) {
    if (spec.externalLocal) {
      // Pods and the node itself may use any endpoint (and the node's traffic is masqueraded
      // so replies come back here); only traffic from outside is kept to local endpoints.
      if (port.clusterEndpoints.length > 0) {
        nat.add(names.ext, `-m comment --comment ${quote(`pod traffic for ${portName} external destinations`)} -s ${node.clusterCIDR} -j ${names.svc}`);
        nat.add(names.ext, `-m comment --comment ${quote(`masquerade LOCAL traffic for ${portName} external destinations`)} -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ`);
        nat.add(names.ext, `-m comment --comment ${quote(`route LOCAL traffic for ${portName} external destinations`)} -m addrtype --src-type LOCAL -j ${names.svc}`);
      }
      if (port.localEndpoints.length > 0) nat.add(names.ext, `-j ${names.svl}`);
    } else {
      nat.add(names.ext, `-m comment --comment ${quote(`masquerade traffic for ${portName} external destinations`)} -j KUBE-MARK-MASQ`);
      nat.add(names.ext, `-j ${names.svc}`);
    }
  }

  const usesCluster = (port.hasInternalEndpoints && !spec.internalLocal) || (external && (!spec.externalLocal || port.clusterEndpoints.length > 0));
  if (usesCluster && port.clusterEndpoints.length > 0) {
    nat.add(names.svc, `-m comment --comment ${quote(`${portName} cluster IP`)} ${match(port.clusterIP)} ! -s ${node.clusterCIDR} -j KUBE-MARK-MASQ`);
    balance(nat, names.svc, port, port.clusterEndpoints);
  }
  const usesLocal = (port.hasInternalEndpoints && spec.internalLocal) || (external && spec.externalLocal);
  if (usesLocal && port.localEndpoints.length > 0) balance(nat, names.svl, port, port.localEndpoints);

  const endpoints = new Map<string, PlannedEndpoint>();
  for (const e of [...(usesCluster ? port.clusterEndpoints : []), ...(usesLocal ? port.localEndpoints : [])]) endpoints.set(e.sepChain, e);
  for (const e of [...endpoints.values()].sort((a, b) => (a.sepChain < b.sepChain ? -1 : 1))) {
    const comment = `-m comment --comment ${quote(portName)}`;
    // Hairpin: a pod reaching itself through its service must see the node as the source.
    nat.add(e.sepChain, `${comment} -s ${e.ip}/${bits} -j KUBE-MARK-MASQ`);
    const affinity = spec.affinityTimeoutSeconds > 0 ? ` -m recent --name ${e.sepChain} --set` : '';
    nat.add(e.sepChain, `${comment}${affinity} -m ${protocol} -p ${protocol} -j DNAT --to-destination ${e.address}`);
  }
}

/** ClientIP affinity first (`recent` match), then a random pick with falling probabilities. */
function balance(nat: Chains, chain: string, port: PlannedPort, endpoints: PlannedEndpoint[]): void {
  const timeout = port.spec.affinityTimeoutSeconds;
  if (timeout > 0) {
    for (const e of endpoints) {
      nat.add(chain, `-m comment --comment ${quote(`${port.portName} -> ${e.address}`)} -m recent --name ${e.sepChain} --rcheck --seconds ${timeout} --reap -j ${e.sepChain}`);
    }
  }
  endpoints.forEach((e, i) => {
    const statistic = i < endpoints.length - 1 ? ` -m statistic --mode random --probability ${probability(i, endpoints.length)}` : '';
    nat.add(chain, `-m comment --comment ${quote(`${port.portName} -> ${e.address}`)}${statistic} -j ${e.sepChain}`);
  });
}

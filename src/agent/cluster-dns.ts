// The node's cluster DNS server (the agent config's `dns` field; docs/dns.md): the
// same DnsServer as `tapir dns`, fed by the agent's own service sync, so the names
// and the proxy's tables come from one compiled ClusterView per sync.
//
// Where it answers, as NodeLocal DNSCache does but without its extra hop:
//   - the cluster DNS addresses (kubelet's clusterDNS) are local addresses on the host
//     TUN, so the node's own processes and hostNetwork pods reach the server's sockets
//     directly, and the service tables leave port 53 of those addresses alone
//     (service-sync.ts withoutClusterDns);
//   - a pod's UDP query to them is answered in the data path itself, from the zone or
//     the cache (Datapath.setLocalUdpService); one the server must forward, and every
//     TCP query, is routed to the host TUN like any packet for the node and reaches the
//     same sockets;
//   - with `nodeAddress`, also the node's underlay address: the endpoints of a kube-dns
//     Service that selects the agents (deploy/kubernetes/kube-dns/service.yaml).
import { ip as runIp } from '../device/ip-command.ts';
import { UdpBatchSocket } from '../device/udp.ts';
import type { Datapath } from '../datapath/datapath.ts';
import { kubeadmCorefile, parseCorefile, readCorefile } from '../dns/corefile.ts';
import type { CorefileConfig } from '../dns/corefile-config.ts';
import { DnsServer } from '../dns/server.ts';
import { TapirError } from '../errors/tapir-error.ts';
import { ipv4ToString, ipv6ToString, parseIpv6 } from '../wire/address.ts';
import type { AgentConfig, AgentDnsConfig } from './config.ts';
import type { ServiceSync } from './service-sync.ts';

/** DNS's port. */
const DNS_PORT = 53;

/** The DNS server could not be set up (its Corefile, or an address on the host TUN). */
export class ClusterDnsError extends TapirError {
  readonly code = 'TAPIR_CLUSTER_DNS';
}

/** The Corefile the config names, or kubeadm's when it names none. */
export function agentCorefile(dns: AgentDnsConfig): CorefileConfig {
  if (dns.corefile !== null) return readCorefile(dns.corefile);
  return parseCorefile(kubeadmCorefile(), 'the built-in Corefile (kubeadm\'s)');
}

export class ClusterDns {
  readonly server: DnsServer;
  readonly #datapath: Datapath;
  readonly #unsubscribe: () => void;

  private constructor(server: DnsServer, datapath: Datapath, unsubscribe: () => void) {
    this.server = server;
    this.#datapath = datapath;
    this.#unsubscribe = unsubscribe;
  }

  /**
   * Reads the Corefile, puts the cluster DNS addresses on the host TUN, starts the
   * server with the current view and every later one, and hands the data path its
   * answerer. A Corefile problem or an address that cannot be bound stops the agent's
   * start, as a bad config does.
   */
  static async start(config: AgentConfig, services: ServiceSync, datapath: Datapath, log: (m: string) => void, onFatal: (err: Error) => void): Promise<ClusterDns> {
    const dns = config.dns!;
    const corefile = agentCorefile(dns);
    const clusterDNS = dns.clusterDNS.map(ipv4ToString);
    const clusterDNS6 = dns.clusterDNS6;
    const all = [...clusterDNS, ...clusterDNS6];
    try {
      // Replaced, not added: a restarted agent finds them on its persistent TUN. IPv6 ones
      // without duplicate address detection, which would hold them tentative (unbindable) for a while.
      const lines = [...clusterDNS.map((a) => `addr replace ${a}/32 dev ${config.hostTun}`), ...clusterDNS6.map((a) => `addr replace ${a}/128 dev ${config.hostTun} nodad`)];
      await runIp(['-batch', '-'], { input: lines.join('\n') + '\n' });
    } catch (err) {
      throw new ClusterDnsError(`cannot put the cluster DNS address${all.length > 1 ? 'es' : ''} ${all.join(', ')} on ${config.hostTun}: ${(err as Error).message}`, { cause: err });
    }
    // The kube-dns Service's endpoints are the nodes' addresses of its family: an IPv6 kube-dns's, the IPv6 underlay address.
    // (In cluster mode that address comes from the Node's InternalIPs, where the IPv6 node ports are served.)
    const underlay6 = config.underlayAddressV6 ?? config.nodePortAddressesV6[0] ?? null;
    const nodeAddresses = !dns.nodeAddress ? [] : [
      ipv4ToString(config.underlayAddress),
      ...(clusterDNS6.length > 0 && underlay6 !== null ? [ipv6ToString(underlay6)] : []),
    ];
    const server = new DnsServer({
      corefile,
      log: (m) => log(`dns: ${m}`),
      defaultBind: [...all, ...nodeAddresses],
      openBatchUdp: (address, port) => UdpBatchSocket.open({ address, port, gso: false, gro: false }),
      onFatal,
    });
    const unsubscribe = services.subscribe((view) => server.setView(view));
    const current = services.view;
    if (current !== undefined) server.setView(current);
    try {
      await server.start();
    } catch (err) {
      unsubscribe();
      throw err;
    }
    const answerer = clusterDNS.length === 0 ? null : server.localAnswerer(clusterDNS[0]!, DNS_PORT);
    if (answerer !== null) datapath.setLocalUdpService(dns.clusterDNS, DNS_PORT, answerer);
    const answerer6 = clusterDNS6.length === 0 ? null : server.localAnswerer6(clusterDNS6[0]!, DNS_PORT);
    if (answerer6 !== null) datapath.setLocalUdpService6(clusterDNS6.map((a) => parseIpv6(a)!), DNS_PORT, answerer6);
    const inDataPath = (address: string): boolean => (address === clusterDNS[0] && answerer !== null) || (address === clusterDNS6[0] && answerer6 !== null);
    for (const a of server.addresses) log(`dns: serving ${a.zones.join(' ')} on ${a.address}:${a.port} (udp, tcp${inDataPath(a.address) ? '; pods\' UDP answered in the data path' : ''})`);
    return new ClusterDns(server, datapath, unsubscribe);
  }

  async stop(): Promise<void> {
    this.#datapath.setLocalUdpService([], DNS_PORT, null);
    this.#datapath.setLocalUdpService6([], DNS_PORT, null);
    this.#unsubscribe();
    // No lameduck: an agent stopping is restarted at once, and the addresses stay on the TUN.
    await this.server.stop({ lameduck: false });
  }
}

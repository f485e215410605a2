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
import { kubeadmCorefile, parseCorefile, readCorefile, type CorefileConfig } from '../dns/corefile.ts';
import { DnsServer } from '../dns/server.ts';
import { TapirError } from '../errors/tapir-error.ts';
import { ipv4ToString } from '../wire/address.ts';
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
    try {
      // Replaced, not added: a restarted agent finds them on its persistent TUN.
      await runIp(['-batch', '-'], { input: clusterDNS.map((a) => `addr replace ${a}/32 dev ${config.hostTun}`).join('\n') + '\n' });
    } catch (err) {
      throw new ClusterDnsError(`cannot put the cluster DNS address${clusterDNS.length > 1 ? 'es' : ''} ${clusterDNS.join(', ')} on ${config.hostTun}: ${(err as Error).message}`, { cause: err });
    }
    const server = new DnsServer({
      corefile,
      log: (m) => log(`dns: ${m}`),
      defaultBind: [...clusterDNS, ...(dns.nodeAddress ? [ipv4ToString(config.underlayAddress)] : [])],
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
    const answerer = server.localAnswerer(clusterDNS[0]!, DNS_PORT);
    if (answerer !== null) datapath.setLocalUdpService(dns.clusterDNS, DNS_PORT, answerer);
    for (const a of server.addresses) log(`dns: serving ${a.zones.join(' ')} on ${a.address}:${a.port} (udp, tcp${a.address === clusterDNS[0] && answerer !== null ? '; pods\' UDP answered in the data path' : ''})`);
    return new ClusterDns(server, datapath, unsubscribe);
  }

  async stop(): Promise<void> {
    this.#datapath.setLocalUdpService([], DNS_PORT, null);
    this.#unsubscribe();
    // No lameduck: an agent stopping is restarted at once, and the addresses stay on the TUN.
    await this.server.stop({ lameduck: false });
  }
}

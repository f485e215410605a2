// The lab's load-balancer controller, as MetalLB's controller: every Service of type
// LoadBalancer in the API, whoever created it (kubectl, `tapir lab apply`), gets an
// address from the lab's pool in status.loadBalancer.ingress, kept while the Service
// exists. One node daemon runs it (the first node's); the speakers (./speaker.ts) then
// announce the address. src/lab/cluster/load-balancer.ts picks the address.
import type { ServiceObject } from '../../k8s/objects.ts';
import type { LabApiClient } from '../apiserver/client.ts';
import { assignLoadBalancerIPs, takenAddresses, type AddressPool, type AddressPool6 } from '../cluster/load-balancer.ts';

export class LoadBalancerController {
  readonly #api: LabApiClient;
  readonly #pool: AddressPool;
  /** Dual-stack labs: the IPv6 pool, for Services with the IPv6 family. */
  readonly #pool6: AddressPool6 | undefined;
  readonly #poolText: string;
  readonly #log: (message: string) => void;
  /** Services already reported as pending (exhausted pool), so the log says it once. */
  readonly #pending = new Set<string>();

  constructor(options: { api: LabApiClient; pool: AddressPool; pool6?: AddressPool6 | undefined; poolText: string; log: (message: string) => void }) {
    this.#api = options.api;
    this.#pool = options.pool;
    this.#pool6 = options.pool6;
    this.#poolText = options.poolText;
    this.#log = options.log;
  }

  /** Assigns an address to every LoadBalancer Service without one; returns the problems. */
  async sync(services: readonly ServiceObject[]): Promise<string[]> {
    const problems: string[] = [];
    // Addresses given out in this pass count as taken before the watch shows them.
    const given = new Map<string, string[]>();
    for (const svc of services) {
      if (svc.spec.type !== 'LoadBalancer' || svc.status.loadBalancerIngress.length > 0) continue;
      const k = `${svc.metadata.namespace}/${svc.metadata.name}`;
      const taken = takenAddresses(services, k);
      for (const ips of given.values()) for (const ip of ips) taken.add(ip);
      const path = `/api/v1/namespaces/${encodeURIComponent(svc.metadata.namespace)}/services/${encodeURIComponent(svc.metadata.name)}`;
      // The deprecated spec.loadBalancerIP (not in the agents' model): the address asked for.
      const current = await this.#api.request('GET', path);
      if (current.status === 404) continue;
      const requested = (current.body.spec as { loadBalancerIP?: unknown } | undefined)?.loadBalancerIP;
      const ips = assignLoadBalancerIPs(svc.spec.ipFamilies, this.#pool, this.#pool6, typeof requested === 'string' && requested !== '' ? requested : undefined, taken);
      if (ips === undefined) {
        if (!this.#pending.has(k)) this.#log(`load balancer: no free address in the pool ${this.#poolText} for Service ${k}; it stays pending`);
        this.#pending.add(k);
        problems.push(`Service ${k}: no free address in the load balancer pool ${this.#poolText}`);
        continue;
      }
      this.#pending.delete(k);
      const res = await this.#api.request('PATCH', `${path}/status`,
        { status: { loadBalancer: { ingress: ips.map((ip) => ({ ip, ipMode: 'VIP' })) } } }, 'application/merge-patch+json');
      if (res.status === 404) continue;
      if (res.status !== 200) {
        problems.push(`assigning ${ips.join(', ')} to Service ${k}: ${res.status} ${String(res.body.message ?? '')}`);
        continue;
      }
      given.set(k, ips);
      this.#log(`load balancer: Service ${k} gets ${ips.join(', ')}`);
    }
    return problems;
  }
}

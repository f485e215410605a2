// The agent's service NAT, from install to each sync. It goes into the datapath before
// any service is known and before a single pod port is read: an empty table over the
// flow tables a previous agent left (flow-persistence.ts), so that established flows
// are translated as before from their next packet, while new flows to services wait
// for the first full sync (Datapath.servicesSynced). Each ServiceSnapshot then becomes
// new service tables, IPv4 and IPv6, swapped into the NATs between two batches, and the
// service port ids they carry are written for a successor before any packet can use
// them. It also runs the conntrack garbage collection and gives back the heap a large
// sync left (heap-trim.ts).
import type { Datapath } from '../datapath/datapath.ts';
import { HeapTrim } from '../control/heap-trim.ts';
import { buildServiceTable, buildServiceTable6, updateServiceTable, updateServiceTable6 } from '../tables/service-table.ts';
import { ServiceNat6 } from '../services/nat6.ts';
import { ServiceNat, type ServiceIds } from '../services/nat.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import type { FlowStore } from '../tables/flow-store.ts';
import type { AgentConfig } from './config.ts';
import { loadServiceIds, openFlowTables, ServiceIdsFile } from './flow-persistence.ts';

/** Conntrack garbage collection: a slice of the table per tick. */
const CONNTRACK_GC_INTERVAL_MS = 1000;
const CONNTRACK_GC_SLICE = 8192;

export class ServiceProgrammer {
  readonly #config: AgentConfig;
  readonly #datapath: Datapath;
  readonly #log: (message: string) => void;
  readonly #serviceIds: ServiceIdsFile;
  #gcTimer: NodeJS.Timeout | null = null;
  /** Returns the heap a large sync left unused (heap-trim.ts); made with the service proxy. */
  #heapTrim: HeapTrim | null = null;

  constructor(config: AgentConfig, datapath: Datapath, log: (message: string) => void) {
    this.#config = config;
    this.#datapath = datapath;
    this.#log = log;
    this.#serviceIds = new ServiceIdsFile(config.stateDir, log);
  }

  /**
   * The service NAT, before any service is known: an empty table (nothing is a service
   * until the first full sync) over the flow tables a previous agent left in the state
   * directory, so its established flows go on being translated as they were.
   */
  start(): void {
    const store = openFlowTables(this.#config, this.#log);
    let serviceIds: ServiceIds | undefined;
    if (store !== null && !store.fresh) serviceIds = loadServiceIds(this.#config.stateDir, this.#log);
    const nat = new ServiceNat(buildServiceTable({ generation: 0, ports: [], nodePortAddresses: [] }), {
      masqueradeIP: this.#config.underlayAddress,
      // A pod reaching itself through its service is masqueraded to its gateway, which
      // it can answer on the pod network (kube-proxy's hairpin masquerade).
      hairpinIP: this.#config.podCIDR.host(1),
      conntrack: { capacity: this.#config.conntrackSize, timeouts: this.#config.conntrackTimeouts },
      ...(store === null ? {} : { store }),
      ...(serviceIds === undefined ? {} : { serviceIds }),
    });
    if (store !== null && !store.fresh) {
      this.#log(`flows: took over ${nat.conntrack.restored} conntrack entr${nat.conntrack.restored === 1 ? 'y' : 'ies'} and the session affinity of the previous agent`);
    }
    this.#datapath.setServiceNat(nat);
    this.#startServiceNat6(store, store !== null && !store.fresh && this.#config.podCIDRv6 !== null ? loadServiceIds(this.#config.stateDir, this.#log, 'ids6', 'next6') : undefined);
    this.#datapath.servicesSynced = false;
    this.#gcTimer = setInterval(() => this.#datapath.expireServiceFlows(CONNTRACK_GC_SLICE), CONNTRACK_GC_INTERVAL_MS);
    this.#gcTimer.unref();
    this.#heapTrim = new HeapTrim({ log: this.#log });
  }

  /**
   * The IPv6 service NAT (NAT66) of a node with IPv6 pods: masquerading to the node's
   * IPv6 pod gateway, which every endpoint routes back to this node over the overlay.
   */
  #startServiceNat6(store: FlowStore | null, serviceIds: ServiceIds | undefined): void {
    const c = this.#config;
    if (c.podCIDRv6 === null) return;
    const nat6 = new ServiceNat6(buildServiceTable6({ generation: 0, ports: [], nodePortAddresses: [] }), {
      masqueradeIP: c.podCIDRv6.host(1),
      // The flow store's IPv6 regions (a quarter of the IPv4 sizes by default), or tables of this process only.
      conntrack: { capacity: Math.max(1024, c.conntrackSize >> 2), timeouts: c.conntrackTimeouts },
      ...(store === null ? {} : { store }),
      ...(serviceIds === undefined ? {} : { serviceIds }),
    });
    if (store !== null && !store.fresh && nat6.conntrack.restored > 0) this.#log(`flows: took over ${nat6.conntrack.restored} IPv6 conntrack entr${nat6.conntrack.restored === 1 ? 'y' : 'ies'}`);
    this.#datapath.setServiceNat6(nat6);
  }

  /** A new service snapshot: its tables swap into the datapath between two batches. */
  program(snapshot: ServiceSnapshot): void {
    const nat = this.#datapath.serviceNat;
    // One endpoint change touches one port's lists (updateServiceTable), not all 10k.
    const table = nat === null ? buildServiceTable(snapshot) : updateServiceTable(nat.table, snapshot);
    for (const problem of table.problems) this.#log(`services: ${problem}`);
    if (nat === null) return;
    const nat6 = this.#datapath.serviceNat6;
    let flushed = nat.setTable(table);
    if (nat6 !== null) {
      const table6 = updateServiceTable6(nat6.table, snapshot);
      for (const problem of table6.problems) this.#log(`services: ${problem}`);
      flushed += nat6.setTable(table6);
    }
    this.#datapath.servicesSynced = true;
    // Synchronously, before the next batch: a successor must know every id a flow can carry.
    this.#serviceIds.save(nat, nat6);
    if (flushed > 0) this.#log(`services: ${flushed} UDP flow(s) to removed endpoints flushed`);
    // How much the services side holds: a sync that leaves a fraction of it (a mass
    // deletion) leaves the rest as garbage, which a collection frees in little time.
    let held = snapshot.ports.length + (snapshot.ports6?.length ?? 0);
    for (const p of snapshot.ports) held += p.allEndpoints.length;
    for (const p of snapshot.ports6 ?? []) held += p.allEndpoints.length;
    this.#heapTrim?.afterSync(held);
  }

  /** Stops the garbage collection and the heap trim; the NATs stay with the datapath. */
  stop(): void {
    if (this.#gcTimer !== null) clearInterval(this.#gcTimer);
    this.#heapTrim?.stop();
  }
}

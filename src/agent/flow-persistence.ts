// The flows a restarted agent takes over (docs/ARCHITECTURE.md, "Flows that outlive the
// agent"): two files in the state directory, a tmpfs under /run. The flow tables'
// memory (conntrack and session affinity, src/tables/flow-store.ts) is a shared mapping
// of one of them, so every record is already there when the process dies, `kill -9`
// included. The other holds the service port ids those records carry, written
// whenever the ids change and before any packet can use a new one, so that the next
// agent's first table gives each service port the id its old flows know it by.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceNat6 } from '../services/nat6.ts';
import type { ServiceNat, ServiceIds } from '../services/nat.ts';
import { bootId, mapSharedFile } from '../device/shared-memory.ts';
import { flowStoreBytes, openFlowStore, type FlowStore } from '../tables/flow-store.ts';
import { AFFINITY_DEFAULT_CAPACITY } from '../tables/affinity.ts';
import type { AgentConfig } from './config.ts';

/** The flow tables' memory in the state directory (a tmpfs under /run): conntrack and affinity outlive the agent. */
const FLOW_STORE_FILE = 'flow-tables';
/** The service port ids the flow tables' entries carry, for the next agent. */
const SERVICE_IDS_FILE = 'service-ids.json';

/** The flow tables' shared memory, or null (tables in this process only) when it cannot be had. */
export function openFlowTables(config: AgentConfig, log: (message: string) => void): FlowStore | null {
  const path = join(config.stateDir, FLOW_STORE_FILE);
  const layout = { conntrackCapacity: config.conntrackSize, affinityCapacity: AFFINITY_DEFAULT_CAPACITY };
  try {
    const mapping = mapSharedFile(path, flowStoreBytes(layout));
    const store = openFlowStore(mapping.buffer, layout, bootId(), !mapping.fresh);
    if (store.discarded !== '') log(`flows: the flow tables in ${path} were not taken over (${store.discarded}); starting empty`);
    return store;
  } catch (err) {
    log(`flows: cannot map ${path} (${(err as Error).message}); flows will not survive an agent restart`);
    return null;
  }
}

/** The service port ids a previous agent saved: the IPv4 NAT's (`ids`, `next`) or the IPv6 one's (`ids6`, `next6`). */
export function loadServiceIds(stateDir: string, log: (message: string) => void, idsField = 'ids', nextField = 'next'): ServiceIds | undefined {
  const path = join(stateDir, SERVICE_IDS_FILE);
  try {
    const saved = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    const next = saved[nextField];
    const ids = saved[idsField];
    if (typeof next !== 'number' || typeof ids !== 'object' || ids === null) throw new Error(`not a service id file (no ${idsField})`);
    const byKey = new Map<string, number>();
    for (const [key, id] of Object.entries(ids)) if (typeof id === 'number') byKey.set(key, id);
    return { byKey, next };
  } catch (err) {
    // Tags of the old entries then match no service port: their flows go on, only
    // a UDP endpoint's removal will not find them (they time out instead). New ids
    // start past every tag taken over (ServiceNat).
    log(`flows: cannot read ${path} (${(err as Error).message}); taken-over flows keep their NAT but lose their service port`);
    return undefined;
  }
}

/** Writes the service port ids for a successor, each time they change. */
export class ServiceIdsFile {
  readonly #stateDir: string;
  readonly #log: (message: string) => void;
  /** idsVersion of the service NATs (IPv4, IPv6) when their ids were last written for a successor. */
  #savedIdsVersion = -1;
  #savedIdsVersion6 = -1;

  constructor(stateDir: string, log: (message: string) => void) {
    this.#stateDir = stateDir;
    this.#log = log;
  }

  /** Writes the service port ids for a successor, when they changed (before any packet uses new ones). */
  save(nat: ServiceNat, nat6: ServiceNat6 | null): void {
    if (nat.idsVersion === this.#savedIdsVersion && (nat6 === null || nat6.idsVersion === this.#savedIdsVersion6)) return;
    const { byKey, next } = nat.serviceIds();
    const v6 = nat6?.serviceIds();
    const path = join(this.#stateDir, SERVICE_IDS_FILE);
    try {
      writeFileSync(`${path}.tmp`, JSON.stringify({ next, ids: Object.fromEntries(byKey), ...(v6 === undefined ? {} : { next6: v6.next, ids6: Object.fromEntries(v6.byKey) }) }));
      renameSync(`${path}.tmp`, path);
      this.#savedIdsVersion = nat.idsVersion;
      this.#savedIdsVersion6 = nat6?.idsVersion ?? -1;
    } catch (err) {
      this.#log(`flows: cannot write ${path}: ${(err as Error).message}`);
    }
  }
}

/** Leaving for good: the flows go with the ports (a restart keeps both). */
export function removeFlowFiles(stateDir: string): void {
  for (const f of [FLOW_STORE_FILE, SERVICE_IDS_FILE]) rmSync(join(stateDir, f), { force: true });
}

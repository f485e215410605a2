// The lab's control plane in `lab up`: the lab API server in the underlay namespace (the
// lab's "control-plane host", on the underlay bridge where every node reaches it), on a
// loopback port of the host for kubectl, with the lab's Nodes and Namespaces created
// through the API. The agents' switch to it, the controllers and the scheduler/kubelet
// emulation build on this (see docs/lab-apiserver.md).
import { fileURLToPath } from 'node:url';
import { ipv4ToString, parseCidr, parseIpv4 } from '../../wire/address.ts';
import { DEFAULT_NODE_PORT_RANGE } from '../../model/cluster-defaults.ts';
import { ipBatch } from '../network/shell.ts';
import { parsePool, poolContains } from '../cluster/load-balancer.ts';
import { labServiceCidrs, saveState, type ApiServerState, type LabState } from '../state.ts';
import { LabApiClient } from './client.ts';
import { restartControlPlane, startControlPlane, type ControlPlaneSpec } from './control-plane.ts';
import { LabApiServerError } from './status.ts';

/**
 * This checkout's `tapir`: TAPIR_LAB_TAPIR_BIN replaces the agent only (tests run stand-in
 * agents with it), never the API server.
 */
const TAPIR = fileURLToPath(new URL('../../../bin/tapir', import.meta.url));

/** The RBAC rules the DaemonSet ships: the lab authorizes its agents with this very file. */
export const RBAC_FILE = fileURLToPath(new URL('../../../deploy/kubernetes/rbac.yaml', import.meta.url));

/**
 * The first host address of the underlay that no node, client or load-balancer pool
 * uses (.1 in the default topology): the control-plane host's.
 */
export function apiServerAddress(state: LabState): string {
  const underlay = parseCidr(state.addressing.underlayCIDR)!;
  const used = new Set<number>([...state.nodes.map((n) => parseIpv4(n.underlayIP)!), ...(state.client === null ? [] : [parseIpv4(state.client.ip)!])]);
  const pool = parsePool(state.addressing.loadBalancerPool);
  for (let a = underlay.network + 1; a < underlay.broadcast; a++) {
    if (!used.has(a) && (pool === undefined || !poolContains(pool, a))) return ipv4ToString(a);
  }
  throw new LabApiServerError(`no free address in the underlay ${state.addressing.underlayCIDR} for the lab API server`);
}

/** Starts the lab API server and creates the lab's Nodes and Namespaces in it. */
export async function startLabControlPlane(state: LabState, objects: readonly Record<string, unknown>[]): Promise<ApiServerState> {
  const address = apiServerAddress(state);
  const prefixLength = state.addressing.underlayCIDR.split('/')[1];
  // The control-plane host reaches every node's pods through that node, as a cluster's
  // hosts do (the overlay's routes): a pod that talks to the API server (an Ingress
  // controller) gets its answers. `replace`: the lab's upstream DNS server in the same
  // namespace may have put them there already.
  await ipBatch(state.underlay.netns, [
    `addr add ${address}/${prefixLength} dev ${state.underlay.bridge}`,
    ...state.nodes.map((n) => `route replace ${n.podCIDR} via ${n.underlayIP} dev ${state.underlay.bridge}`),
  ]);
  const cp = await startControlPlane(controlPlaneSpec(state, address));
  const client = new LabApiClient(cp.hostServer, cp.caFile, cp.adminToken);
  for (const obj of objects) await client.create(obj);
  return { pid: cp.pid, dir: cp.dir, log: cp.log, address, labServer: cp.labServer, hostServer: cp.hostServer, caFile: cp.caFile, hostKubeconfig: cp.hostKubeconfig, labKubeconfig: cp.labKubeconfig, agentToken: cp.agentToken };
}

function controlPlaneSpec(state: LabState, address: string): ControlPlaneSpec {
  return {
    dir: `${state.stateDir}/apiserver`,
    netns: state.underlay.netns,
    address,
    // Dual-stack labs: kube-apiserver's two ranges, IPv4 (the primary) first; IPv6-only labs: the IPv6 range alone.
    serviceCIDR: labServiceCidrs(state),
    nodePortRange: DEFAULT_NODE_PORT_RANGE,
    tapirBin: TAPIR,
    rbacFile: RBAC_FILE,
  };
}

/**
 * Kills the lab's API server and starts it again on the same addresses (the fault of
 * kube-apiserver crashing and coming back: the journal's objects survive, the watch
 * history does not). Records the new process in the lab's state; returns its pid.
 */
export async function restartLabControlPlane(state: LabState): Promise<number> {
  const api = state.apiServer;
  if (api === undefined || api === null) throw new LabApiServerError(`lab ${state.name} has no API server`);
  const pid = await restartControlPlane(controlPlaneSpec(state, api.address), api.pid, api.hostServer);
  state.apiServer = { ...api, pid };
  saveState(state);
  return pid;
}

// This checkout's executables, as the lab runs them; the environment may name others
// (another build, a wrapper under strace): TAPIR_LAB_TAPIR_BIN runs as
// `BIN agent --config FILE`, TAPIR_LAB_CNI_BIN as the CNI plugin (its directory heads
// CNI_PATH), and TAPIR_LAB_CNI_CONFLIST names a conflist (/etc/cni/net.d/...) whose
// plugin the lab's runtime passes instead of its own network config (the Vagrant
// testbed's nodes: the conflist install-cni put there).
import { fileURLToPath } from 'node:url';
import { agentCredentials } from '../apiserver/control-plane.ts';
import type { ApiServerState, NodeState } from '../state.ts';

export const TAPIR_BIN = process.env.TAPIR_LAB_TAPIR_BIN || fileURLToPath(new URL('../../../bin/tapir', import.meta.url));
/** Tests run stand-in agents (TAPIR_LAB_TAPIR_BIN) that serve the control socket but no DNS. */
export const STAND_IN_AGENT = (process.env.TAPIR_LAB_TAPIR_BIN ?? '') !== '';
export const TAPIR_CNI_BIN = process.env.TAPIR_LAB_CNI_BIN || fileURLToPath(new URL('../../../bin/tapir-cni', import.meta.url));
export const TAPIR_CNI_CONFLIST = process.env.TAPIR_LAB_CNI_CONFLIST || null;

/** The node agent's command line: `lab up` starts it, the node daemon starts it again. Its log file is for people: plain lines. */
export function agentCommand(configFile: string): string[] {
  return [TAPIR_BIN, 'agent', '--config', configFile, '--log-format', 'text'];
}

/** Where a pod's kubelet mounts the service account's token, CA and namespace. */
export const SERVICE_ACCOUNT_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * The agent in cluster mode, started as the kubelet starts the DaemonSet's container:
 * in a mount namespace of its own (unshare), with the service account files
 * written under `podRoot` (control-plane.ts agentCredentials) bind-mounted at
 * SERVICE_ACCOUNT_MOUNT, where the in-cluster loader reads them. The mount is the
 * agent's alone; the host only gets the empty mount point (/run/secrets/..., on tmpfs)
 * when it had none. Its environment (KUBERNETES_SERVICE_HOST/PORT, NODE_NAME) comes
 * from whoever starts it: `lab up`, then the node daemon's supervisor.
 */
export function clusterAgentCommand(configFile: string, podRoot: string): string[] {
  const script = `mkdir -p ${SERVICE_ACCOUNT_MOUNT} && mount --bind "$1/${SERVICE_ACCOUNT_MOUNT.slice(1)}" ${SERVICE_ACCOUNT_MOUNT} && shift && exec "$@"`;
  // slave: the network namespaces the runtime mounts later (/run/netns/...) still reach
  // the agent, as the DaemonSet's hostPath with mountPropagation HostToContainer does;
  // its own bind mount does not reach the host.
  return ['unshare', '--mount', '--propagation', 'slave', 'sh', '-c', script, 'tapir-agent-mounts', podRoot, ...agentCommand(configFile), '--kubernetes'];
}

/**
 * The cluster-mode agent's environment besides the inherited one: what the DaemonSet
 * gives its pod (KUBERNETES_SERVICE_HOST/PORT, NODE_NAME; the service account files are
 * written under `podRoot` now), and a 30 s watch watchdog (the lab API server sends a
 * bookmark every 10 s).
 */
export function clusterAgentEnv(state: { apiServer: ApiServerState }, node: NodeState, podRoot: string): Record<string, string> {
  // WATCH_IDLE_ENV of src/agent/service-sync.ts, spelled out: importing the agent's
  // service code here would load it into every lab command, the kernel lab's included.
  return { ...agentCredentials(state.apiServer, podRoot, node.name), TAPIR_WATCH_IDLE_SECONDS: '30' };
}

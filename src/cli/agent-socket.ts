// Finding a running agent's control socket for the operator commands (capture, stats):
// given outright, or looked up in a lab's state by node or by the pod a port belongs to.
import { CliError } from './errors.ts';

export const DEFAULT_AGENT_SOCKET = '/run/tapir/agent.sock';

export interface AgentSocketQuery {
  socket?: string | undefined;
  lab?: string | undefined;
  node?: string | undefined;
  /** A pod (name, namespace/name, container ID or TAP name) whose node's agent is wanted. */
  port?: string | undefined;
  command: string;
}

export async function findAgentSocket(q: AgentSocketQuery): Promise<string> {
  if (q.socket !== undefined) return q.socket;
  if (q.lab === undefined) return DEFAULT_AGENT_SOCKET;
  const { loadState } = await import('../lab/state.ts');
  const state = loadState(q.lab);
  if (state === undefined) throw new CliError(`${q.command}: no lab named '${q.lab}' (tapir lab list)`);
  const agents = state.nodes.filter((n) => n.agent !== null && (q.node === undefined || n.name === q.node));
  if (agents.length === 0) throw new CliError(`${q.command}: lab '${q.lab}' has no Tapir agent${q.node === undefined ? '' : ` on node '${q.node}'`} (is it --dataplane kernel?)`);
  if (q.node !== undefined || q.port === undefined) {
    if (agents.length > 1) throw new CliError(`${q.command}: lab '${q.lab}' has ${agents.length} agents; say which with --node`);
    return agents[0]!.agent!.controlSocket;
  }
  const port = q.port;
  const pod = state.pods.find((p) => p.name === port || `${p.namespace}/${p.name}` === port || p.containerId === port || p.hostDevice === port);
  if (pod === undefined) throw new CliError(`${q.command}: '${port}' is not a pod of lab '${q.lab}'; for 'host' or 'underlay' add --node NODE`);
  return state.nodes.find((n) => n.name === pod.node)!.agent!.controlSocket;
}

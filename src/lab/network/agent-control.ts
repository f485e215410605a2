// The lab asks an agent only one thing over its control socket: `status`, to know it is
// ready and how many ports it has. Pods are attached through tapir-cni, as a runtime
// would. Uses the agent's own client (src/agent/control-client.ts).
import { ControlClient } from '../../agent/control-client.ts';
import type { PortInfo, StatusInfo } from '../../agent/protocol.ts';

/** The agent's status, or null when it does not answer (yet, or any more). */
export async function agentStatusAt(socketPath: string, timeoutMs = 1000): Promise<StatusInfo | null> {
  try {
    return await new ControlClient(socketPath, { timeoutMs }).status();
  } catch {
    return null;
  }
}

/** The agent's pod ports (for the TAP names the CNI result does not carry). */
export async function agentPorts(socketPath: string, timeoutMs = 2000): Promise<(PortInfo & { containerId: string })[]> {
  return new ControlClient(socketPath, { timeoutMs }).listPorts();
}

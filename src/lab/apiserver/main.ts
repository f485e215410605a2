// Running the lab API server as a process (`tapir lab apiserver`), and the client side of
// its fault injection endpoint. The lab starts the process inside its own network
// namespace (`ip netns exec`), where the agents reach it, and may hand it a listening
// socket it opened on 127.0.0.1 of the host (`--listen-fd`), where kubectl reaches it:
// one process and one state serve both without any change to the host's network.
import type { AddressInfo } from 'node:net';
import { LabApiClient } from './client.ts';
import { LabApiServer, type ApiServerOptions } from './server.ts';

/** Starts the server and serves until SIGTERM or SIGINT; `ready` gets the listening addresses. */
export async function runApiServer(options: ApiServerOptions, ready: (addresses: AddressInfo[]) => void): Promise<number> {
  const server = new LabApiServer(options);
  const addresses = await server.start();
  ready(addresses);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await server.close();
  return 0;
}

export interface FaultTarget {
  /** https://127.0.0.1:PORT */
  server: string;
  caFile: string;
  /** A system:masters token. */
  token: string;
}

/**
 * Asks a running lab API server for a fault: close-watches, expire-next-watch (count),
 * stall-watches, compact, refuse (seconds). Resolves with the server's JSON answer.
 */
export async function injectFault(target: FaultTarget, fault: string, params: Record<string, number> = {}): Promise<Record<string, unknown>> {
  const query = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)])).toString();
  return await new LabApiClient(target.server, target.caFile, target.token).must('POST', `/tapir-lab/faults/${fault}${query === '' ? '' : `?${query}`}`);
}

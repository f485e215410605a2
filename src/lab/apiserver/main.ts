// Running the lab API server as a process (`tapir lab apiserver`), and the client side of
// its fault injection endpoint. The lab starts the process inside its own network
// namespace (`ip netns exec`), where the agents reach it, and may hand it a listening
// socket it opened on 127.0.0.1 of the host (`--listen-fd`), where kubectl reaches it:
// one process and one state serve both without any change to the host's network.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { LabApiServer, type ApiServerOptions } from './server.ts';
import { LabApiServerError } from './status.ts';

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
  const url = new URL(`/tapir-lab/faults/${fault}`, target.server);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, String(v));
  return await new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, ca: readFileSync(target.caFile), headers: { authorization: `Bearer ${target.token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) reject(new LabApiServerError(`fault ${fault}: ${res.statusCode}: ${text}`));
        else resolve(JSON.parse(text) as Record<string, unknown>);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

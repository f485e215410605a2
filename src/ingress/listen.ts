// Where the Ingress proxy and its status server listen. By default both families on one
// socket, as ingress-nginx does on a dual-stack cluster (its `listen 80; listen [::]:80`
// pair): '::' with ipv6Only false takes IPv6 clients and, through IPv4-mapped addresses
// (RFC 4291 2.5.5.2), IPv4 ones too, so one pod port serves both halves of a dual-stack
// Service. A kernel built or booted without IPv6 cannot open an AF_INET6 socket at all
// (EAFNOSUPPORT): then '0.0.0.0', as ingress-nginx leaves out its [::] listeners when
// IPv6 is off. A given address (either family) is listened on alone.
import type { Server } from 'node:net';
import { isIP } from 'node:net';

/** The listen address when none is given: both families. */
export const ANY_ADDRESS = '::';
const ANY_IPV4 = '0.0.0.0';

export interface Listening {
  port: number;
  /** The address listened on, as the log shows it ('[::]' for both families). */
  address: string;
  /** Whether IPv4 and IPv6 clients are both taken. */
  bothFamilies: boolean;
}

/** Whether `address` is one `listenOn` takes: an IPv4 or IPv6 literal, without brackets. */
export function validListenAddress(address: string): boolean {
  return isIP(address) !== 0;
}

/**
 * Listens on `port` of `address` (undefined: both families, falling back to IPv4 alone
 * where the kernel has no IPv6). Rejects with the listen error of the address tried
 * last, its `code` kept.
 */
export async function listenOn(server: Server, port: number, address: string | undefined): Promise<Listening> {
  let last: unknown;
  for (const [host, bothFamilies] of listenAddresses(address)) {
    try {
      return await listenOnce(server, port, host, bothFamilies);
    } catch (err) {
      last = err;
      if ((err as { code?: string }).code !== 'EAFNOSUPPORT') break;
    }
  }
  throw last;
}

/**
 * The addresses to try in turn for `address` (undefined: both families, then IPv4 alone
 * where the kernel has no IPv6: the next is tried only after EAFNOSUPPORT), each with
 * whether it takes both families. The addon's listener (h1-native.ts) goes by it too.
 */
export function listenAddresses(address: string | undefined): [string, boolean][] {
  return address !== undefined ? [[address, address === ANY_ADDRESS]] : [[ANY_ADDRESS, true], [ANY_IPV4, false]];
}

function listenOnce(server: Server, port: number, address: string, bothFamilies: boolean): Promise<Listening> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    // ipv6Only false is node's default; written out because the dual-stack socket is the point.
    server.listen({ port, host: address, ipv6Only: false }, () => {
      server.off('error', onError);
      const a = server.address();
      const bound = typeof a === 'object' && a !== null ? a.port : port;
      resolve({ port: bound, address: address.includes(':') ? `[${address}]` : address, bothFamilies });
    });
  });
}

/**
 * The client address as the upstream is told it (X-Forwarded-For, X-Real-IP): an IPv4
 * client of the dual-stack socket shows as ::ffff:a.b.c.d, which ingress-nginx (an IPv4
 * listener of its own) never writes; the IPv4 address alone is what backends expect.
 */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return '';
  if (remote.length > 7 && remote.charCodeAt(0) === 58 /* ':' */ && remote.startsWith('::ffff:') && isIP(remote.slice(7)) === 4) return remote.slice(7);
  return remote;
}

// The lab workloads' listening sockets: 0.0.0.0 for IPv4 (peers keep their plain
// dotted-quad form, which tests compare against), and, where the namespace has IPv6
// (a dual-stack pod), a second, IPv6-only socket on [::] with the same handler.
import type { Server as NetServer } from 'node:net';

/**
 * Listens `v4` on 0.0.0.0:`port` and a server from `makeV6` on [::]:`port` (ipv6Only);
 * resolves with `v4`, whose close also closes the IPv6 one. No IPv6 in the namespace
 * (EAFNOSUPPORT, EADDRNOTAVAIL) leaves the IPv4 listener alone.
 */
export function listenBothFamilies<S extends NetServer>(v4: S, makeV6: () => S, port: number): Promise<S> {
  return new Promise((resolve, reject) => {
    v4.once('error', reject);
    v4.listen(port, '0.0.0.0', () => {
      v4.off('error', reject);
      const v6 = makeV6();
      v6.once('error', () => resolve(v4));
      v6.listen({ port, host: '::', ipv6Only: true }, () => {
        v4.once('close', () => v6.close());
        resolve(v4);
      });
    });
  });
}

// Service addresses of either family as the ServiceSnapshot carries them: IPv4 as
// uint32, IPv6 as RFC 5952 text, so one ServiceTable class builds both halves. The
// builds (service-table.ts and its helpers) turn IPv6 text into the four big-endian
// words the typed arrays hold here, once per address; the datapath never sees text.
import type { ServicePortSpec } from '../model/service-snapshot.ts';
import { parseIpv6 } from '../wire/address.ts';
import { loadIpv6Words } from '../wire/ipv6.ts';

/** A service port of either family: IPv4 addresses as uint32, IPv6 ones as RFC 5952 text. */
export type AnyPortSpec = ServicePortSpec<number | string>;
export type Address = number | string;

/** Four big-endian int32 words of an IPv6 address in text (slow path: builds). */
export function words6(text: string): Int32Array {
  const b = parseIpv6(text);
  if (b === null) throw new RangeError(`not an IPv6 address: ${JSON.stringify(text)}`);
  const w = new Int32Array(4);
  loadIpv6Words(w, 0, b, 0);
  return w;
}

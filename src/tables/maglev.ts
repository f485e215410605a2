// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
// Network Load Balancer", NSDI'16, §3.4): each endpoint of a service port gets a
// permutation of the lookup table's M slots from two hashes of its name; endpoints
// take turns claiming their next free preferred slot until the table is full. A flow
// hashes to a slot; removing one of N endpoints moves only ~1/N of the flows (those it
// owned, plus a few from the turn-taking), so flows keep their endpoint across
// rebuilds, restarts and nodes when conntrack state is lost.
import { endpointHash } from './hash.ts';

/**
 * Lookup table sizes: primes (the permutation's skip must be coprime with M). The
 * paper (§3.4, §5.3) and Cilium want M >> N; at M >= 100 x N each endpoint's share of
 * slots is within ~1% of 1/N. M also bounds the extra disruption when an endpoint
 * leaves (slots of remaining endpoints that change hands), measured here for N = 10:
 * 5% at M = 251, 2.4% at 1021, 1% at 4093, 0.3% at 65521. So: the smallest prime of
 * at least max(1021, 100 x N). One fixed 65537-slot table per service port would cost
 * 128 KiB each (1.3 GB for 10,000); 1021 slots cost 2 KiB. 65521 (the largest prime
 * below 2^16) caps it: slots hold 16-bit endpoint positions.
 */
export const MAGLEV_TABLE_SIZES: readonly number[] = [1021, 2039, 4093, 8191, 16381, 32749, 65521];

/** Endpoints beyond this share 16-bit slots with the empty marker; more is no real service port. */
export const MAGLEV_MAX_ENDPOINTS = 65535;
const EMPTY = 0xffff;

/** The smallest table size with at least 100 slots per endpoint (the largest past 655 endpoints). */
export function maglevTableSize(endpoints: number): number {
  for (const m of MAGLEV_TABLE_SIZES) if (m >= endpoints * 100) return m;
  return MAGLEV_TABLE_SIZES[MAGLEV_TABLE_SIZES.length - 1]!;
}

// Scratch for the permutation walk, grown on demand (build time only, one thread).
let scratchOrder = new Int32Array(64);
let scratchCursor = new Int32Array(64);
let scratchSkip = new Int32Array(64);

/**
 * Fills `out[outOff .. outOff+size)` with positions (0..count-1) of the endpoints
 * `ips/ports[start .. start+count)`. Endpoints are visited in the order of their
 * names (address, port), not their order in the list, so the same endpoint set always
 * gives the same table however the control side orders it.
 */
export function populateMaglev(ips: Uint32Array, ports: Uint16Array, start: number, count: number, size: number, out: Uint16Array, outOff: number): void {
  if (count < 1 || count > MAGLEV_MAX_ENDPOINTS) throw new RangeError(`Maglev needs 1..${MAGLEV_MAX_ENDPOINTS} endpoints, got ${count}`);
  if (scratchOrder.length < count) {
    const n = Math.max(count, scratchOrder.length * 2);
    scratchOrder = new Int32Array(n);
    scratchCursor = new Int32Array(n);
    scratchSkip = new Int32Array(n);
  }
  const order = scratchOrder.subarray(0, count);
  for (let i = 0; i < count; i++) order[i] = i;
  order.sort((a, b) => ips[start + a]! - ips[start + b]! || ports[start + a]! - ports[start + b]!);
  const cursor = scratchCursor;
  const skip = scratchSkip;
  for (let k = 0; k < count; k++) {
    const e = start + order[k]!;
    cursor[k] = endpointHash(ips[e]!, ports[e]!, 0) % size;
    skip[k] = (endpointHash(ips[e]!, ports[e]!, 1) % (size - 1)) + 1;
  }
  out.fill(EMPTY, outOff, outOff + size);
  let filled = 0;
  for (;;) {
    for (let k = 0; k < count; k++) {
      let c = cursor[k]!;
      while (out[outOff + c] !== EMPTY) {
        c += skip[k]!;
        if (c >= size) c -= size;
      }
      out[outOff + c] = order[k]!;
      c += skip[k]!;
      cursor[k] = c >= size ? c - size : c;
      if (++filled === size) return;
    }
  }
}

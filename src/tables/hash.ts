// Integer hashes for the service tables: flow tuples (conntrack index, Maglev lookup,
// affinity) and endpoint names (Maglev permutations). Math.imul mixing in the style of
// MurmurHash3's finaliser: a few multiplies, no allocation.
//
// Every hash returns 30 bits (0 .. 2^30-1). V8 passes and returns such values as small
// integers; a uint32 at or above 2^31 would be boxed into a HeapNumber whenever a call
// is not inlined, which is an allocation per packet.

/** Seed of the Maglev lookup hash: fixed, so every node and every restart agrees on a flow's endpoint. */
export const MAGLEV_FLOW_SEED = 0x2545f491;

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 2;
}

/**
 * Hash of a flow tuple (protocol, source address and port, destination address and
 * port). Addresses may be passed as int32 or uint32 (only their low 32 bits count).
 * `seed` keeps a conntrack table's layout unguessable (hash flooding).
 */
export function flowHash(seed: number, protocol: number, src: number, srcPort: number, dst: number, dstPort: number): number {
  let h = seed ^ protocol;
  h = Math.imul(h ^ src, 0xcc9e2d51);
  h = Math.imul((h << 15) | (h >>> 17), 0x1b873593);
  h = Math.imul(h ^ dst, 0xcc9e2d51);
  h = Math.imul((h << 13) | (h >>> 19), 0x1b873593);
  h = Math.imul(h ^ ((srcPort << 16) | dstPort), 0xcc9e2d51);
  return fmix(h);
}

/** Hash of an (affinity) key: a service port id and a client address. */
export function pairHash(seed: number, a: number, b: number): number {
  let h = Math.imul(seed ^ a, 0xcc9e2d51);
  h = Math.imul((h << 15) | (h >>> 17), 0x1b873593);
  h = Math.imul(h ^ b, 0xcc9e2d51);
  return fmix(h);
}

/**
 * The two hashes of an endpoint's name that give its Maglev permutation (Eisenbud et
 * al., NSDI'16, §3.4: offset and skip). An endpoint of a service port is named by its
 * address and port; hashing those numbers is equivalent to hashing "ip:port" text and
 * needs no string. `which` picks the hash (0 = offset, 1 = skip).
 */
export function endpointHash(ip: number, port: number, which: number): number {
  const seed = which === 0 ? 0x5bd1e995 : 0x27d4eb2f;
  return pairHash(seed, ip, port);
}

/**
 * Seeded 32-bit digest of an IPv6 address, four big-endian words from `a[at]`
 * (MurmurHash3_x86_32 over its 16 bytes), as int32. An IPv6 conntrack record holds
 * digests where an IPv4 one holds addresses (conntrack.ts): two addresses with one
 * digest cost a full compare, never a wrong match, and the seed (per table) keeps
 * clients from choosing addresses that share one.
 */
export function addressDigest6(seed: number, a: Int32Array, at: number): number {
  let h = seed | 0;
  for (let i = 0; i < 4; i++) {
    let k = Math.imul(a[at + i]!, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= 16;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Seed of address6Digest: fixed, so that every node and every restart agrees. */
const ADDRESS6_NAME_SEED = 0x7f4a7c15;

/**
 * A fixed digest of an IPv6 address (four big-endian int32 words from `a[at]`): the
 * name the IPv6 service tables give an endpoint where IPv4's use its address (Maglev,
 * affinity, table diffs). addressDigest6 under a fixed seed, cut to 30 bits (a small
 * integer, never boxed) and never 0 (the tables' "no address").
 */
export function address6Digest(a: Int32Array, at: number): number {
  const h = addressDigest6(ADDRESS6_NAME_SEED, a, at) >>> 2;
  return h === 0 ? 1 : h;
}

// The response cache in front of the forwarder: CoreDNS's `cache` plugin with RFC 2308's
// negative caching, over whole wire messages.
//
// Two caches, as CoreDNS keeps them: *success* (NOERROR with answers) and *denial*
// (NXDOMAIN, and NODATA: NOERROR, no answer, an SOA in the authority section). Each has
// a capacity (CoreDNS: 10000 split over 256 shards = 9984); a full one evicts by CLOCK
// (cache-entries.ts). Not cached, as in CoreDNS and RFC 2308 section 5: truncated
// answers, SERVFAIL and other errors, and negative answers without an SOA (they carry no
// negative TTL). CoreDNS caches SERVFAIL for 5 s by default; Tapir does not, so a failed
// upstream is asked again on the next query.
//
// TTL (RFC 2308 section 5, CoreDNS `computeTTL`): a success entry lives the smallest TTL
// of its records (OPT excluded), a denial entry min(SOA TTL, SOA MINIMUM); either is
// clamped to [minTtl, maxTtl] ([minDenialTtl, maxDenialTtl] for denial). Every record's
// TTL is capped at the entry's lifetime when it is stored, and a hit answers with each
// TTL decreased by the entry's age (cache-answer.ts).
//
// Each part with a job of its own lives beside this file: the key and the query fields
// it is made of (cache-key.ts), the one walk over a response at put()
// (cache-response-scan.ts), the entries and their eviction (cache-entries.ts), and the
// bytes a hit writes (cache-answer.ts). Entries are found by the qname string readQuery
// made (one Map lookup, no key string built per query), then among the few entries of
// that name (A, AAAA, ...) by qtype, qclass and the key bits.
import { capTtls, writeAnswer } from './cache-answer.ts';
import { Clock, Entry } from './cache-entries.ts';
import { keyBits, type CacheQuery } from './cache-key.ts';
import { scanResponse, type Scan } from './cache-response-scan.ts';
import { Flag, HEADER_LENGTH, Rcode } from './message.ts';

/** CoreDNS's default capacity per cache: 10000 rounded down to 256 shards. */
export const DEFAULT_CACHE_CAPACITY = 9984;

export interface CacheOptions {
  successCapacity: number;
  denialCapacity: number;
  /** Seconds; CoreDNS 3600 (`cache 30` makes both maxima 30). */
  maxTtl: number;
  /** Seconds; CoreDNS 1800. */
  maxDenialTtl: number;
  /** Seconds; CoreDNS 5. */
  minTtl: number;
  /** Seconds; CoreDNS 5. */
  minDenialTtl: number;
}

/** CoreDNS's defaults for a bare `cache`. */
export const DEFAULT_CACHE_OPTIONS: Readonly<CacheOptions> = Object.freeze({
  successCapacity: DEFAULT_CACHE_CAPACITY,
  denialCapacity: DEFAULT_CACHE_CAPACITY,
  maxTtl: 3600,
  maxDenialTtl: 1800,
  minTtl: 5,
  minDenialTtl: 5,
});

export interface CacheStats {
  hits: { success: number; denial: number };
  misses: number;
  entries: { success: number; denial: number };
  /** Entries pushed out by a full cache (coredns_cache_evictions_total). */
  evictions: { success: number; denial: number };
}

export class DnsCache {
  readonly #options: CacheOptions;
  /** Every entry by qname; a name's list holds at most one entry per (qtype, qclass, bits). */
  readonly #byName = new Map<string, Entry[]>();
  readonly #success: Clock;
  readonly #denial: Clock;
  readonly #scan: Scan = { questionEnd: 0, answers: 0, minTtl: -1, soaTtl: -1, soaMinimum: -1, ttlOffsets: [], optStart: 0, optEnd: 0 };
  #hitsSuccess = 0;
  #hitsDenial = 0;
  #misses = 0;

  constructor(options: CacheOptions) {
    for (const field of ['successCapacity', 'denialCapacity', 'maxTtl', 'maxDenialTtl', 'minTtl', 'minDenialTtl'] as const) {
      const v = options[field];
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`DnsCache: ${field} must be a non-negative integer, got ${v}`);
    }
    this.#options = { ...options };
    this.#success = new Clock(options.successCapacity);
    this.#denial = new Clock(options.denialCapacity);
  }

  /**
   * Writes the cached response for the query into `res` (id, RD/CD and TTLs rewritten;
   * the question copied from `req` when given) and returns its length; 0 on a miss or an
   * expired entry. `maxSize` is the client's limit (512 or its EDNS size over UDP): a
   * longer entry is answered truncated (TC, header, question and OPT), so the client
   * comes back over TCP and gets it whole from the cache.
   */
  get(q: CacheQuery, res: Uint8Array, nowMs: number, req?: Uint8Array, maxSize = 65535): number {
    const entry = this.#find(q, keyBits(q));
    if (entry === undefined) {
      this.#misses++;
      return 0;
    }
    const ageMs = nowMs - entry.storedAtMs;
    if (ageMs >= entry.ttl * 1000) {
      this.#remove(entry);
      this.#misses++;
      return 0;
    }
    const msg = entry.message;
    if (msg.length > res.length) {
      this.#misses++;
      return 0;
    }
    entry.used = true;
    if (entry.denial) this.#hitsDenial++;
    else this.#hitsSuccess++;
    return writeAnswer(entry, q, res, ageMs, req, maxSize);
  }

  /**
   * Stores a response to `q` per RFC 2308 (see the header). Anything that is not a
   * well-formed, untruncated response to exactly this question is ignored, as CoreDNS
   * drops a reply that does not match its request. Caps the TTLs in `response` in place.
   */
  put(q: CacheQuery, response: Uint8Array, len: number, nowMs: number): void {
    if (len < HEADER_LENGTH || len > response.length || len > 65535) return;
    const flags = (response[2]! << 8) | response[3]!;
    if ((flags & Flag.QR) === 0 || (flags & Flag.OPCODE) !== 0 || (flags & Flag.TC) !== 0) return;
    const rcode = flags & 0x0f;
    if (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN) return;
    const scan = this.#scan;
    if (!scanResponse(response, len, q, scan)) return;

    let denial: boolean;
    let ttl: number;
    if (rcode === Rcode.NOERROR && scan.answers > 0) {
      denial = false;
      ttl = clamp(scan.minTtl, this.#options.minTtl, this.#options.maxTtl);
    } else if (scan.soaTtl >= 0) {
      // NXDOMAIN, or NODATA (NOERROR without answers), with the zone's SOA (RFC 2308 sections 2.1, 2.2).
      denial = true;
      ttl = clamp(Math.min(scan.soaTtl, scan.soaMinimum), this.#options.minDenialTtl, this.#options.maxDenialTtl);
    } else {
      return; // RFC 2308 section 5: no SOA, no negative TTL, not cached; a referral is no answer either
    }
    const offsets = new Uint16Array(scan.ttlOffsets);
    capTtls(response, offsets, ttl);

    const bits = keyBits(q);
    const previous = this.#find(q, bits);
    if (previous !== undefined) this.#remove(previous); // a success replaces a denial, and back
    const clock = denial ? this.#denial : this.#success;
    if (ttl === 0 || clock.slots.length === 0) return;
    if (clock.free.length === 0) {
      this.#remove(clock.victim());
      clock.evictions++;
    }
    // A copy: Buffer's slice() is a view, and the server hands in its one reused response buffer.
    const entry = new Entry(q, bits, denial, Uint8Array.prototype.slice.call(response, 0, len), offsets, scan, nowMs, ttl);
    entry.slot = clock.free.pop()!;
    clock.slots[entry.slot] = entry;
    clock.size++;
    const list = this.#byName.get(q.qname);
    if (list === undefined) this.#byName.set(q.qname, [entry]);
    else list.push(entry);
  }

  #find(q: CacheQuery, bits: number): Entry | undefined {
    const list = this.#byName.get(q.qname);
    if (list === undefined) return undefined;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (e.qtype === q.qtype && e.qclass === q.qclass && e.bits === bits) return e;
    }
    return undefined;
  }

  #remove(entry: Entry): void {
    const clock = entry.denial ? this.#denial : this.#success;
    clock.slots[entry.slot] = undefined;
    clock.free.push(entry.slot);
    clock.size--;
    const list = this.#byName.get(entry.qname)!;
    if (list.length === 1) this.#byName.delete(entry.qname);
    else list.splice(list.indexOf(entry), 1);
  }

  stats(): CacheStats {
    return {
      hits: { success: this.#hitsSuccess, denial: this.#hitsDenial },
      misses: this.#misses,
      entries: { success: this.#success.size, denial: this.#denial.size },
      evictions: { success: this.#success.evictions, denial: this.#denial.evictions },
    };
  }

  /** Drops every entry (a reload with another configuration). */
  clear(): void {
    for (const list of this.#byName.values()) for (const e of list.slice()) this.#remove(e);
  }
}

function clamp(v: number, min: number, max: number): number {
  return v < min ? min : v > max ? max : v;
}

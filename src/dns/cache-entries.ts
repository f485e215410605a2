// The bounded store under the response cache. An Entry is one stored response with what a
// hit needs found at put(): its TTL fields' offsets, the question's end and the OPT
// record's place. A Clock is the fixed slots of one cache (success or denial) and its
// eviction order: a full cache evicts by CLOCK (second chance: an entry hit since the
// hand last passed it is spared once), which approximates least-recently-used without
// moving anything on a hit. CoreDNS evicts a random entry of the shard. The index by name
// over both clocks, and the moves in and out of them, are DnsCache's (cache.ts).
import type { CacheQuery } from './cache-key.ts';
import type { Scan } from './cache-response-scan.ts';

export class Entry {
  readonly qname: string;
  readonly qtype: number;
  readonly qclass: number;
  /** DO, CD, EDNS presence (keyBits). */
  readonly bits: number;
  readonly denial: boolean;
  /** The response as stored: TTLs capped at `ttl`, its own id and flags. */
  readonly message: Uint8Array;
  /** Offsets of the 32-bit TTL field of every record except OPT. */
  readonly ttlOffsets: Uint16Array;
  /** The offset after the question section (the same in every query for this key). */
  readonly questionEnd: number;
  /** The OPT record in `message`, for a truncated reply: [optStart, optEnd), empty without one. */
  readonly optStart: number;
  readonly optEnd: number;
  readonly storedAtMs: number;
  /** Seconds. */
  readonly ttl: number;
  /** Its index in its Clock's slots. */
  slot = -1;
  /** Hit since the clock hand last passed it. */
  used = false;

  constructor(q: CacheQuery, bits: number, denial: boolean, message: Uint8Array, ttlOffsets: Uint16Array, scan: Scan, storedAtMs: number, ttl: number) {
    this.qname = q.qname;
    this.qtype = q.qtype;
    this.qclass = q.qclass;
    this.bits = bits;
    this.denial = denial;
    this.message = message;
    this.ttlOffsets = ttlOffsets;
    this.questionEnd = scan.questionEnd;
    this.optStart = scan.optStart;
    this.optEnd = scan.optEnd;
    this.storedAtMs = storedAtMs;
    this.ttl = ttl;
  }
}

/** A fixed number of slots and a hand (CLOCK): the eviction order of one cache. */
export class Clock {
  readonly slots: (Entry | undefined)[];
  readonly free: number[] = [];
  hand = 0;
  size = 0;
  evictions = 0;

  constructor(capacity: number) {
    this.slots = new Array<Entry | undefined>(capacity).fill(undefined);
    for (let i = capacity - 1; i >= 0; i--) this.free.push(i);
  }

  /** The entry to give way: the first one under the hand not hit since it last passed. */
  victim(): Entry {
    for (;;) {
      const e = this.slots[this.hand]!;
      this.hand = (this.hand + 1) % this.slots.length;
      if (!e.used) return e;
      e.used = false;
    }
  }
}

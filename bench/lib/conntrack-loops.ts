// The timed loops of bench/conntrack-table.ts. Each table implementation imports its
// own instance of this module (a distinct URL), so each has its own call sites and
// inline caches: one loop shared by two classes would measure polymorphic calls.
import { Conntrack, TCP } from '../../src/tables/conntrack.ts';

// The IPv4 surface both versions share.
export interface Conntrack4 {
  lookup(protocol: number, src: number, srcPort: number, dst: number, dstPort: number, now: number): number;
  insert(protocol: number, oSrc: number, oSrcPort: number, oDst: number, oDstPort: number,
    rSrc: number, rSrcPort: number, rDst: number, rDstPort: number, now: number): number;
  remove(entry: number): void;
}
export type Make4 = (capacity: number) => Conntrack4;

const VIP = 0x0a60000a | 0;
const EP = 0x0af40205 | 0;
const NODE = 0xc0a8010a | 0;
const client = (i: number) => (0x0af40000 + (i >> 10)) | 0; // 1,024 flows per client address
const sport = (i: number) => 1024 + (i & 1023);
export let sink = 0;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** ns per operation of `run(ops)`. */
function time(run: (ops: number) => void, ops: number): number {
  const t0 = process.hrtime.bigint();
  run(ops);
  return Number(process.hrtime.bigint() - t0) / ops;
}

// Flow i: client(i):sport(i) -> VIP:80, answered by EP:8080 to NODE:sport(i).
function filled4(make: Make4, flows: number): Conntrack4 {
  const ct = make(flows);
  for (let i = 0; i < flows; i++) ct.insert(TCP, client(i), sport(i), VIP, 80, EP, 8080 + (i >> 16), NODE, sport(i), 0);
  return ct;
}

export interface Figures { lookup: number; reply: number; insertRemove: number }

export function measure4(make: Make4, flows: number): () => Figures {
  const ct = filled4(make, flows);
  const fresh = make(flows);
  // A stride through the flows, so consecutive lookups touch unrelated records.
  const step = flows > 1000 ? 7919 : 1;
  return () => ({
    lookup: time((ops) => {
      let f = 0;
      for (let k = 0; k < ops; k++) {
        sink += ct.lookup(TCP, client(f), sport(f), VIP, 80, 1);
        f += step; if (f >= flows) f -= flows;
      }
    }, 2_000_000),
    reply: time((ops) => {
      let f = 0;
      for (let k = 0; k < ops; k++) {
        sink += ct.lookup(TCP, EP, 8080 + (f >> 16), NODE, sport(f), 1);
        f += step; if (f >= flows) f -= flows;
      }
    }, 2_000_000),
    insertRemove: time((ops) => {
      for (let k = 0; k < ops; k++) {
        const i = k % flows;
        const e = fresh.insert(TCP, client(i), sport(i), VIP, 80, EP, 8080, NODE, sport(i), 0);
        fresh.remove(e);
      }
    }, 1_000_000),
  });
}

export function measure6(flows: number): () => Figures {
  const ct = new Conntrack({ capacity: flows, family: 6 });
  const fresh = new Conntrack({ capacity: flows, family: 6 });
  // Per flow: orig src, orig dst, ports, reply src, reply dst, ports (insert6's tuple).
  const t = new Int32Array(flows * 18);
  for (let i = 0; i < flows; i++) {
    const b = i * 18;
    t.set([0xfd000000 | 0, 0, 0x10f4, client(i), 0xfd000000 | 0, 0, 0x0096, 0x0a, (sport(i) << 16) | 80], b);
    t.set([0xfd000000 | 0, 0, 0x10f4, 0x0205, 0xfd000000 | 0, 0, 0xc0a8, 0x010a, (8080 << 16) | sport(i)], b + 9);
    ct.insert6(TCP, t.subarray(b, b + 18), 0);
  }
  const step = flows > 1000 ? 7919 : 1;
  const tuples = Array.from({ length: flows }, (_, i) => t.subarray(i * 18, i * 18 + 18));
  return () => ({
    lookup: time((ops) => {
      let f = 0;
      for (let k = 0; k < ops; k++) {
        sink += ct.lookup6(TCP, t, f * 18, sport(f), f * 18 + 4, 80, 1);
        f += step; if (f >= flows) f -= flows;
      }
    }, 2_000_000),
    reply: time((ops) => {
      let f = 0;
      for (let k = 0; k < ops; k++) {
        sink += ct.lookup6(TCP, t, f * 18 + 9, 8080, f * 18 + 13, sport(f), 1);
        f += step; if (f >= flows) f -= flows;
      }
    }, 2_000_000),
    insertRemove: time((ops) => {
      for (let k = 0; k < ops; k++) {
        const e = fresh.insert6(TCP, tuples[k % flows]!, 0);
        fresh.remove(e);
      }
    }, 1_000_000),
  });
}


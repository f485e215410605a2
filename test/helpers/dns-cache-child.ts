// The child of dns-cache.test.ts's allocation test (see gc-child.ts): N cache hits, as the
// server answers cached external names, between "MARK start" and "MARK end". A hit must
// allocate nothing: the stored message is copied into the caller's buffer and patched.
import * as dnsPacket from 'dns-packet';
import { getHeapSpaceStatistics } from 'node:v8';
import { DEFAULT_CACHE_OPTIONS, DnsCache } from '../../src/dns/cache.ts';
import { makeQuery, responseTo } from './dns-upstream.ts';

function young(): number {
  let n = 0;
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space' || s.space_name === 'new_large_object_space') n += s.space_used_size;
  return n;
}

const hits = Number(process.argv[3] ?? 1_000_000);
const cache = new DnsCache(DEFAULT_CACHE_OPTIONS);
const queries = Array.from({ length: 256 }, (_, i) => {
  const name = `host-${i}.example.test`;
  const { msg, q } = makeQuery(name, i % 2 === 0 ? 'A' : 'AAAA', { edns: true, id: i });
  const answers: dnsPacket.Answer[] = i % 2 === 0
    ? [{ type: 'A', name, ttl: 300, data: '192.0.2.1' }, { type: 'A', name, ttl: 300, data: '192.0.2.2' }]
    : [{ type: 'AAAA', name, ttl: 300, data: '2001:db8::1' }];
  const response = dnsPacket.encode(responseTo(dnsPacket.decode(msg), {
    answers,
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0 } as dnsPacket.Answer],
  }));
  cache.put(q, response, response.length, 0);
  return { msg, q };
});
const res = new Uint8Array(65535);
let bytes = 0;
// Warm up (optimised code), then measure; the clock moves so TTLs are rewritten.
for (let i = 0; i < 100_000; i++) bytes += cache.get(queries[i & 255]!.q, res, 1000, queries[i & 255]!.msg, 1232);
console.log('MARK warm-up');
globalThis.gc?.();
console.log('MARK start');
// The young generation is read right around the loop: the MARK lines' own writes (a
// pipe that may be slow to take them on a loaded machine) are not the cache's.
const young0 = young();
for (let i = 0; i < hits; i++) {
  const x = queries[i & 255]!;
  bytes += cache.get(x.q, res, 5000 + (i >>> 10), x.msg, 1232);
}
const young1 = young();
console.log('MARK end');
console.log(JSON.stringify({ hits: cache.stats().hits.success, bytes, youngGrowth: young1 - young0 }));

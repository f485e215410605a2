// Maglev lookup tables (Eisenbud et al., NSDI'16 §3.4): sizes, every slot owned,
// balance, independence from list order, and the disruption when an endpoint leaves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAGLEV_TABLE_SIZES, maglevTableSize, populateMaglev } from '../src/tables/maglev.ts';

function endpoints(n: number, base = 0x0af40000): [Uint32Array, Uint16Array] {
  const ips = new Uint32Array(n);
  const ports = new Uint16Array(n).fill(8080);
  for (let i = 0; i < n; i++) ips[i] = base + i * 7 + 2;
  return [ips, ports];
}

function table(ips: Uint32Array, ports: Uint16Array, size = maglevTableSize(ips.length)): Uint16Array {
  const out = new Uint16Array(size + 4).fill(0xaaaa);
  populateMaglev(ips, ports, 0, ips.length, size, out, 2);
  assert.equal(out[0], 0xaaaa, 'writes stay inside the table');
  assert.equal(out[size + 2], 0xaaaa);
  return out.subarray(2, 2 + size);
}

test('table sizes are primes of at least max(1021, 100 x endpoints), capped at 65521', () => {
  const isPrime = (m: number) => { for (let d = 2; d * d <= m; d++) if (m % d === 0) return false; return true; };
  for (const m of MAGLEV_TABLE_SIZES) assert.ok(isPrime(m), `${m}`);
  assert.equal(maglevTableSize(1), 1021);
  assert.equal(maglevTableSize(10), 1021);
  assert.equal(maglevTableSize(11), 2039);
  assert.equal(maglevTableSize(100), 16381);
  assert.equal(maglevTableSize(5000), 65521);
});

test('every slot is owned, and each endpoint owns close to M/N slots', () => {
  for (const n of [1, 2, 3, 10, 57]) {
    const [ips, ports] = endpoints(n);
    const t = table(ips, ports);
    const count = new Array<number>(n).fill(0);
    for (const k of t) {
      assert.ok(k < n);
      count[k]!++;
    }
    const share = t.length / n;
    // Turn-taking gives each endpoint floor(M/N) or ceil(M/N) slots (§3.4: "at most one more").
    for (const c of count) assert.ok(Math.abs(c - share) <= 1, `n=${n}: ${c} vs ${share}`);
  }
});

test('the table depends on the endpoint set, not its order', () => {
  const [ips, ports] = endpoints(9);
  const t1 = table(ips, ports);
  const perm = [4, 0, 8, 2, 6, 1, 3, 7, 5];
  const ips2 = new Uint32Array(perm.map((i) => ips[i]!));
  const t2 = table(ips2, ports);
  for (let s = 0; s < t1.length; s++) assert.equal(ips2[t2[s]!], ips[t1[s]!]);
});

test('removing one endpoint of 20 moves its slots and few others', () => {
  const [ips, ports] = endpoints(20);
  const t1 = table(ips, ports, 2039);
  const gone = 13;
  const ips2 = new Uint32Array([...ips.slice(0, gone), ...ips.slice(gone + 1)]);
  const t2 = table(ips2, ports.subarray(0, 19), 2039);
  let others = 0;
  for (let s = 0; s < t1.length; s++) {
    const before = ips[t1[s]!];
    const after = ips2[t2[s]!];
    assert.notEqual(after, ips[gone]);
    if (t1[s] !== gone && before !== after) others++;
  }
  assert.ok(others / t1.length < 0.05, `${others} of ${t1.length} slots of remaining endpoints changed`);
});

test('bad input is refused', () => {
  const [ips, ports] = endpoints(2);
  assert.throws(() => populateMaglev(ips, ports, 0, 0, 1021, new Uint16Array(1021), 0), /1\.\.65535 endpoints/);
});

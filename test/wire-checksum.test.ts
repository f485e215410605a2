import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checksum, combine, fold, sumBytes, sumWords, pseudoHeaderV4, pseudoHeaderV6, sumData, udpWireChecksum,
  updateChecksum16, updateChecksum32, updatePartialSum32, verifyChecksum, get16, get32, set16, set32, parseIpv6,
} from '../src/wire/index.ts';
import { Prng, referenceSum } from './fixtures/wire/prng.ts';

test('RFC 1071 §3 numerical example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2', () => {
  const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
  assert.equal(sumData(b, 0, 8), 0xddf2);
  assert.equal(checksum(b, 0, 8), 0x220d);
  // Byte order independence (RFC 1071 §2(B)): the swapped bytes give the swapped sum.
  const swapped = Uint8Array.from([0x01, 0x00, 0x03, 0xf2, 0xf5, 0xf4, 0xf7, 0xf6]);
  assert.equal(sumData(swapped, 0, 8), 0xf2dd);
});

test('an odd trailing byte is padded with zero (RFC 1071 §4.1)', () => {
  const b = Uint8Array.from([0x12, 0x34, 0x56]);
  assert.equal(sumData(b, 0, 3), 0x1234 + 0x5600);
  assert.equal(sumData(b, 0, 0), 0);
});

test('a real IPv4 header (RFC 791 style, from a capture) verifies, and recomputes to its field', () => {
  // 45 00 00 54 b3 16 40 00 40 01 72 f6 0a 4d 00 01 0a 4d 00 02 (ping 10.77.0.1 > 10.77.0.2)
  const h = Uint8Array.from([0x45, 0, 0, 0x54, 0xb3, 0x16, 0x40, 0, 0x40, 1, 0x72, 0xf6, 10, 77, 0, 1, 10, 77, 0, 2]);
  assert.equal(verifyChecksum(h, 0, 20), true);
  set16(h, 10, 0);
  assert.equal(checksum(h, 0, 20), 0x72f6);
});

test('the word fast path equals the reference sum at every alignment and length', () => {
  const rng = new Prng(1071);
  const backing = new Uint8Array(4096 + 16);
  rng.fill(backing);
  for (let shift = 0; shift < 4; shift++) {
    // Views starting at different byteOffsets change the 4-byte alignment of the data.
    const view = new Uint8Array(backing.buffer, shift, backing.length - shift);
    for (let n = 0; n < 300; n++) {
      const off = rng.below(64);
      const len = n < 200 ? n : rng.below(4000);
      const want = referenceSum(view, off, len);
      assert.equal(sumData(view, off, len), want, `shift ${shift} off ${off} len ${len}`);
      assert.equal(sumWords(view, off, len), want, `words: shift ${shift} off ${off} len ${len}`);
      assert.equal(sumBytes(view, off, len), want, `bytes: shift ${shift} off ${off} len ${len}`);
    }
  }
  // All ones: the largest sums, carries everywhere.
  const ones = new Uint8Array(65535).fill(0xff);
  assert.equal(sumData(ones, 1, 65534), referenceSum(ones, 1, 65534));
  assert.equal(sumData(ones, 0, 65535), referenceSum(ones, 0, 65535));
});

test('fold and combine carry end-around, also past 2^32', () => {
  assert.equal(fold(0x1ffff), 0x0001);
  assert.equal(fold(0xffff), 0xffff);
  assert.equal(fold(0x1_0000_0000), 0x0001);
  assert.equal(fold(0xffff * 0x10000 + 0xffff), 0xffff);
  assert.equal(combine(0xffff, 0x0001), 0x0001);
});

test('RFC 1624 §4 example: eqn. 3 gives 0x0000 where eqn. 2 would give -0', () => {
  assert.equal(updateChecksum16(0xdd2f, 0x5555, 0x3285), 0x0000);
});

test('incremental 16- and 32-bit updates equal a full recompute over random rewrites', () => {
  const rng = new Prng(1624);
  const b = new Uint8Array(60);
  for (let round = 0; round < 20000; round++) {
    const len = 20 + 2 * rng.below(20);
    rng.fill(b, 0, len);
    set16(b, 10, 0);
    set16(b, 10, checksum(b, 0, len));
    if (rng.below(2) === 0) {
      const at = 12 + 2 * rng.below((len - 14) / 2);
      const oldValue = get16(b, at);
      const newValue = rng.below(3) === 0 ? (~oldValue & 0xffff) : rng.below(0x10000);
      const hc = updateChecksum16(get16(b, 10), oldValue, newValue);
      set16(b, at, newValue);
      set16(b, 10, 0);
      assert.equal(hc, checksum(b, 0, len), `round ${round}`);
    } else {
      const at = 12 + 2 * rng.below((len - 16) / 2);
      const oldValue = get32(b, at);
      const newValue = rng.next();
      const hc = updateChecksum32(get16(b, 10), oldValue, newValue);
      set32(b, at, newValue);
      set16(b, 10, 0);
      assert.equal(hc, checksum(b, 0, len), `round ${round}`);
    }
  }
});

test('IPv4 pseudo-header sum: RFC 768 fields summed as 16-bit words', () => {
  // 10.77.0.1 -> 10.77.0.2, UDP, length 60: 0a4d + 0001 + 0a4d + 0002 + 0011 + 003c
  assert.equal(pseudoHeaderV4(0x0a4d0001, 0x0a4d0002, 17, 60), 0x0a4d + 0x0001 + 0x0a4d + 0x0002 + 0x11 + 0x3c);
  // Its fold of a carry: ffff.ffff + ffff.ffff wraps.
  assert.equal(pseudoHeaderV4(0xffffffff, 0xffffffff, 0, 0), 0xffff);
});

test('IPv6 pseudo-header sum (RFC 8200 §8.1) equals summing the 40-byte pseudo-header', () => {
  const b = new Uint8Array(40);
  parseIpv6('fd00:77::1', b, 0);
  parseIpv6('fd00:77::2', b, 16);
  const pseudo = new Uint8Array(40);
  pseudo.set(b.subarray(0, 32));
  set32(pseudo, 32, 70000); // a length above 16 bits uses both words
  pseudo[39] = 58;
  assert.equal(pseudoHeaderV6(b, 0, 16, 58, 70000), referenceSum(pseudo, 0, 40));
});

test('CHECKSUM_PARTIAL: an address change moves the stored pseudo-header sum like a recompute', () => {
  const rng = new Prng(42);
  for (let i = 0; i < 5000; i++) {
    const src = rng.next(), dst = rng.next(), newDst = rng.next(), len = rng.below(65536);
    const before = pseudoHeaderV4(src, dst, 6, len);
    assert.equal(updatePartialSum32(before, dst, newDst), pseudoHeaderV4(src, newDst, 6, len));
  }
});

test('UDP: a computed 0 is sent as 0xffff (RFC 768)', () => {
  assert.equal(udpWireChecksum(0), 0xffff);
  assert.equal(udpWireChecksum(0x1234), 0x1234);
});

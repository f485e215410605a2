// A seeded uniform double in [0, 1) (the wire tests' mulberry32 Prng): the same
// sequences every run, for shuffles, fuzzing and random change sequences.
import { Prng } from '../fixtures/wire/prng.ts';

export function seededRandom(seed: number): () => number {
  const p = new Prng(seed);
  return () => p.next() / 0x1_0000_0000;
}

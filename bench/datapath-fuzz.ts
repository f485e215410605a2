// The datapath fuzz at length (issue 8): random and mutated frames through every port
// kind with services programmed, by default 10 million, bounded in time. Prints frames
// per second and how the frames ended; exits 1 if a frame threw or left no trace.
//   node bench/datapath-fuzz.ts [--frames 10000000] [--seconds 900] [--seed 1]
import { parseArgs } from 'node:util';
import { runDatapathFuzz } from '../test/helpers/datapath-fuzz.ts';

const { values } = parseArgs({ options: { frames: { type: 'string', default: '10000000' }, seconds: { type: 'string', default: '900' }, seed: { type: 'string', default: '1' } } });
const frames = Number(values.frames);
const seconds = Number(values.seconds);
const seed = Number(values.seed);
const r = runDatapathFuzz(seed, frames, seconds);
console.log(`datapath fuzz, seed ${seed}: ${r.frames} frames in ${r.seconds.toFixed(1)} s (${Math.round(r.frames / r.seconds)} frames/s)${r.frames < frames ? `, stopped by the ${seconds} s bound` : ''}`);
console.log(`  forwarded or answered: ${r.forwarded}   dropped and counted: ${r.dropped}   no trace: ${r.silent}`);
for (const e of r.silentExamples) console.log(`  no trace: ${e}`);
if (r.silent > 0) process.exitCode = 1;

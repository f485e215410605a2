// dnsperf (DNS-OARC, Debian's dnsperf 2.10) output, for bench/dns.ts. Its summary gives
// queries sent/completed/lost, the response codes, queries per second and the average
// latency; dnsperf 2.10 has no latency histogram, so the p99 comes from its verbose
// mode, which prints one line per query ("> NOERROR name A 0.000123", latency in
// seconds; "> T name A" for a query that timed out). The verbose lines cost dnsperf
// about 2% of its rate (measured against NSD on one core) and both servers pay the
// same; they go to a file, not through a pipe into this process.
import { readFileSync } from 'node:fs';

export interface DnsperfResult {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  /** Milliseconds, dnsperf's own average. */
  avgMs: number;
  /** Milliseconds, from the per-query lines (NaN without them). */
  p50Ms: number;
  p99Ms: number;
  /** Response code -> count. */
  rcodes: Record<string, number>;
  runSeconds: number;
  /** Average response size in bytes, dnsperf's own (NaN if it printed none). */
  responseBytes: number;
}

function field(text: string, label: string): number {
  const m = new RegExp(`^\\s*${label}:\\s+([\\d.]+)`, 'm').exec(text);
  if (m === null) throw new Error(`dnsperf printed no "${label}":\n${text.slice(-1500)}`);
  return Number(m[1]);
}

/** The summary dnsperf prints at the end of a run. */
export function parseSummary(text: string): Omit<DnsperfResult, 'p50Ms' | 'p99Ms'> {
  const rcodes: Record<string, number> = {};
  const line = /^\s*Response codes:\s+(.*)$/m.exec(text)?.[1] ?? '';
  for (const m of line.matchAll(/([A-Z]+) (\d+) \(/g)) rcodes[m[1]!] = Number(m[2]);
  return {
    sent: field(text, 'Queries sent'),
    completed: field(text, 'Queries completed'),
    lost: field(text, 'Queries lost'),
    qps: field(text, 'Queries per second'),
    avgMs: field(text, 'Average Latency \\(s\\)') * 1000,
    rcodes,
    runSeconds: field(text, 'Run time \\(s\\)'),
    responseBytes: Number(/^\s*Average packet size:\s+request \d+, response (\d+)/m.exec(text)?.[1] ?? NaN),
  };
}

/** p50 and p99 (nearest rank, ms) of the verbose lines' latencies in `file`; timed-out queries are not in them (dnsperf counts them as lost). */
export function verboseLatencies(file: string): { p50Ms: number; p99Ms: number; count: number } {
  const text = readFileSync(file, 'latin1');
  const latencies = new Float64Array(text.length / 16 + 1);
  let n = 0;
  for (let at = text.indexOf('\n> '); at >= 0; at = text.indexOf('\n> ', at + 1)) {
    const end = text.indexOf('\n', at + 1);
    const line = text.slice(at + 3, end < 0 ? text.length : end);
    if (line.startsWith('T ')) continue;
    const space = line.lastIndexOf(' ');
    const seconds = Number(line.slice(space + 1));
    if (Number.isFinite(seconds)) latencies[n++] = seconds;
  }
  const sorted = latencies.subarray(0, n).sort();
  const rank = (p: number): number => (n === 0 ? NaN : sorted[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]! * 1000);
  return { p50Ms: rank(0.5), p99Ms: rank(0.99), count: n };
}

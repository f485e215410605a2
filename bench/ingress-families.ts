// The Ingress proxy over both IP families: one proxy on its default listen address (one
// [::] socket per port, IPv4 clients as IPv4-mapped addresses), clients of each family to
// endpoints of each family, and the figure of each against IPv4 client to IPv4 endpoint
// (the proxy as it was before it listened on [::]) in the same run.
//
// Placement on a 2-core machine as bench/ingress.ts: the proxy alone on core 0
// (taskset), the backend (nginx returning a fixed 3-byte body, listening on 127.0.0.11
// and fd00:7e57::11, one /128 on the namespace's loopback) and h2load on core 1. The
// proxy's CPU is read from /proc around each measurement: "req/s per core" is the
// figure to compare when core 1 limits a run. Loads: h2load --h1 keep-alive (-c 32) and
// h2 over TLS (-c 16 -m 10). Each figure is the median of --runs runs, the four
// combinations interleaved in each run so that drifting load on the machine touches
// them alike. Each combination first gets --warmup seconds of each load, not recorded
// (the proxy's JIT and its upstream pools).
//
// Everything runs in a network namespace the bench creates (tbing-*), torn down at the
// end, on error and on Ctrl-C; every load is bounded by --seconds.
//
//   node bench/ingress-families.ts [--seconds 4] [--runs 3] [--warmup 2] [--json]
import { parseArgs } from 'node:util';
import { generateDefaultCertificate } from '../src/ingress/tls.ts';
import { backend, config, rule, vhost } from '../test/helpers/ingress-config.ts';
import { IngressNetns, parseH2load, ProxyProcess } from '../test/helpers/ingress-lab.ts';
import { cpuSeconds, median, ratio } from './lib/tools.ts';
import { startNginxBackend } from './lib/nginx-backend.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string' }, runs: { type: 'string' }, warmup: { type: 'string' }, json: { type: 'boolean' } } });
const SECONDS = Number(values.seconds ?? 4);
const WARMUP = Number(values.warmup ?? 2);
const RUNS = Number(values.runs ?? 3);
const PROXY_CORE = 0;
const LOAD_CORE = 1;
const ENDPOINT4 = { ip: '127.0.0.11', port: 8080 };
const ENDPOINT6 = { ip: 'fd00:7e57::11', port: 8080 };

interface Combination { name: string; client: string; host: string }
/** Client address (as h2load's URL has it) and the host whose rule goes to one endpoint family. */
const COMBINATIONS: Combination[] = [
  { name: 'IPv4 client -> IPv4 endpoint', client: '127.0.0.1', host: 'four.example' },
  { name: 'IPv6 client -> IPv6 endpoint', client: '[::1]', host: 'six.example' },
  { name: 'IPv4 client -> IPv6 endpoint', client: '127.0.0.1', host: 'six.example' },
  { name: 'IPv6 client -> IPv4 endpoint', client: '[::1]', host: 'four.example' },
];
const LOADS = [
  { name: 'h1 keep-alive', args: ['--h1', '-c', '32'], scheme: 'http', port: 80 },
  { name: 'h2 over TLS', args: ['-c', '16', '-m', '10'], scheme: 'https', port: 443 },
] as const;

function progress(m: string): void { process.stderr.write(`# ${m}\n`); }

async function main(): Promise<void> {
  const ns = new IngressNetns('tbing-');
  const cleanup = (): void => ns.destroy();
  process.once('SIGINT', () => { cleanup(); process.exit(130); });
  process.once('SIGTERM', () => { cleanup(); process.exit(143); });
  try {
    ns.exec('ip', ['-6', 'addr', 'add', `${ENDPOINT6.ip}/128`, 'dev', 'lo', 'nodad']);
    // h2load resolves with AI_ADDRCONFIG: with a non-loopback IPv6 address and no IPv4 one
    // the namespace would have "no IPv4" and 127.0.0.1 would not resolve (EAI_ADDRFAMILY).
    // A veth pair inside the namespace carries that IPv4 address.
    ns.exec('ip', ['link', 'add', 'tbing0', 'type', 'veth', 'peer', 'name', 'tbing1']);
    ns.exec('ip', ['addr', 'add', '10.254.0.1/32', 'dev', 'tbing0']);
    ns.exec('ip', ['link', 'set', 'tbing0', 'up']);
    ns.exec('ip', ['link', 'set', 'tbing1', 'up']);
    const work = ns.dir;
    startNginxBackend(ns, LOAD_CORE, [`${ENDPOINT4.ip}:${ENDPOINT4.port}`, `[${ENDPOINT6.ip}]:${ENDPOINT6.port}`]);
    const proxy = await ProxyProcess.start(ns, { http: 80, https: 443, address: 'default', cpu: PROXY_CORE, ...generateDefaultCertificate() });
    await proxy.setConfig(config([
      vhost('four.example', [rule('Prefix', '/', backend('bench/four:80', [ENDPOINT4]))]),
      vhost('six.example', [rule('Prefix', '/', backend('bench/six:80', [ENDPOINT6]))]),
    ]));
    for (const c of COMBINATIONS) {
      const r = await ns.execAsync('curl', ['-sS', '-g', '--max-time', '2', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Host: ${c.host}`, `http://${c.client}/`], 5_000);
      if (r.stdout !== '200') throw new Error(`${c.name}: ${r.stdout} ${r.stderr} (backend log: ${work}/backend.err)`);
    }
    progress(`proxy on core ${PROXY_CORE} (default listen: [::]), nginx backend and h2load on core ${LOAD_CORE}; ${SECONDS} s per measurement, ${RUNS} runs`);

    const h2load = async (load: (typeof LOADS)[number], c: Combination, seconds: number): Promise<string> => {
      const out = await ns.execAsync('taskset', ['-c', String(LOAD_CORE), 'h2load', ...load.args, '-D', String(seconds), '-H', `:authority: ${c.host}`, `${load.scheme}://${c.client}:${load.port}/`], (seconds + 30) * 1000);
      if (out.code !== 0) throw new Error(`h2load ${load.name}, ${c.name}: exit ${out.code}: ${out.stderr}${out.stdout}`);
      return out.stdout;
    };
    if (WARMUP > 0) {
      for (const load of LOADS) for (const c of COMBINATIONS) await h2load(load, c, WARMUP);
      progress(`warmed up: ${WARMUP} s of each load and path`);
    }
    const samples = new Map<string, { rps: number; perCore: number; failed: number }[]>();
    for (let run = 0; run < RUNS; run++) {
      for (const load of LOADS) {
        for (const c of COMBINATIONS) {
          const cpu0 = cpuSeconds(proxy.child.pid!);
          const out = await h2load(load, c, SECONDS);
          const cpu = cpuSeconds(proxy.child.pid!) - cpu0;
          const h = parseH2load(out);
          const key = `${load.name}\u0000${c.name}`;
          samples.set(key, [...(samples.get(key) ?? []), { rps: h.rps, perCore: cpu > 0 ? h.succeeded / cpu : NaN, failed: h.failed + h.errored + h.timeout + h.s4xx + h.s5xx }]);
        }
      }
      progress(`run ${run + 1}/${RUNS} done`);
    }

    const rows = LOADS.flatMap((load) => {
      const base = samples.get(`${load.name}\u0000${COMBINATIONS[0]!.name}`)!;
      const baseRps = median(base.map((s) => s.rps)), basePerCore = median(base.map((s) => s.perCore));
      return COMBINATIONS.map((c) => {
        const s = samples.get(`${load.name}\u0000${c.name}`)!;
        const rps = median(s.map((x) => x.rps)), perCore = median(s.map((x) => x.perCore));
        return { load: load.name, path: c.name, rps, perCore, failed: s.reduce((n, x) => n + x.failed, 0), vsRps: ratio(rps, baseRps), vsPerCore: ratio(perCore, basePerCore) };
      });
    });
    if (values.json) {
      console.log(JSON.stringify({ seconds: SECONDS, runs: RUNS, rows }, null, 2));
      return;
    }
    console.log('| load | path | req/s | vs IPv4->IPv4 | req/s per proxy core | vs IPv4->IPv4 | failed |');
    console.log('|---|---|---|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.load} | ${r.path} | ${Math.round(r.rps).toLocaleString('en')} | ${r.vsRps} | ${Math.round(r.perCore).toLocaleString('en')} | ${r.vsPerCore} | ${r.failed} |`);
    await proxy.stop();
  } finally {
    cleanup();
  }
}

await main();

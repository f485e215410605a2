// The Ingress proxy against nginx and HAProxy from Debian (issue 11, "Figures"), in one
// run, configured for the same route: every host, Prefix /, round robin over the same
// two endpoints, the same forwarding headers (X-Forwarded-For/-Proto/-Host/-Port,
// X-Real-IP, X-Request-ID), HTTP/1.1 keep-alive to the endpoints, TLS with the same
// P-256 certificate and ALPN h2/http1.1.
//
// Placement on a 2-core machine: each proxy alone on core 0 (taskset; nginx
// worker_processes 1, HAProxy nbthread 1, Tapir's proxy is one Node.js process); the
// backend (nginx returning a fixed 3-byte body from two listen addresses: the cheapest
// backend there is) and the load generator (wrk, h2load) share core 1. The proxies'
// CPU is read from /proc around each measurement, so "req/s per core" (requests per
// second divided by the share of a core the proxy used) stays meaningful when core 1,
// not the proxy, is what limits a run; "cpu" says which it was (near 100%: the proxy).
//
// Loads: wrk with keep-alive (-c 64), wrk with `Connection: close` (-c 16, a new TCP
// connection per request: the proxy's accept path), h2load over TLS with h2 (-c 16
// -m 10). p50/p99 from wrk's latency distribution and from h2load's per-request log.
// Those loads saturate the proxy, so their latency is mostly its throughput (a closed
// loop of 64 connections waits 64 / rate on average). Latency at the same offered load
// is what the fixed-rate loads were meant to show: h2load sending --rate requests/s in
// all (16 clients, one request in flight each: HTTP/1.1 keep-alive, and h2 over TLS),
// below every proxy's capacity. As h2load paces them, their latency came out the same
// for all three proxies (p50 3.2-3.9 ms, p99 14-22 ms, nginx at 18% of a core), so it
// measures h2load's pacing more than the proxies; what they do show is each proxy's
// CPU at the same offered load ("per core" there is that load over the CPU used).
// `direct` is wrk straight to the backend, for scale. Every figure is the median of
// --runs runs, with min-max; ratios against nginx from the same run. Then the time
// a configuration change takes to be served (setConfig of 1,000 hosts, 2,000 paths,
// to the proxy's acknowledgement; the next request is routed by it).
//
// Everything runs in a network namespace the bench creates (tbing-*), torn down at the
// end, on error and on Ctrl-C; every load is bounded by --seconds.
//
// Each proxy first gets --warmup seconds of every load, not recorded.
//
// This is a VM: its host may run others on our cores (steal, in /proc/stat), and a run
// it did so in measures the neighbours, not the proxy (a proxy at 50% of its core, p99
// several times the usual). Each measurement records the cores stolen during it; one
// over --max-steal (cores, over the whole machine) is taken again, up to --retries
// times, and the last one counts, its steal shown. p99 ratios are also given run by run
// (each proxy against nginx in the same run, seconds apart), which the host's slow
// swings move less than the ratio of medians.
//
// `tapir-node-h2` (not in the default set) is Tapir's proxy with h2 served by node:http2
// (its fallback where the addon has no HTTP/2 session), run on the h2 loads only: the
// same run then shows what the addon's nghttp2 session changes. `tapir-node-net` is
// Tapir's proxy with its plain HTTP/1.1 sockets on node:net instead of the addon's
// (h1-native.ts), run on the HTTP/1.1 loads only.
//
//   node bench/ingress.ts [--seconds 5] [--runs 3] [--warmup 2] [--rate 5000] [--proxies nginx,haproxy,tapir[,tapir-node-h2,tapir-node-net]] [--loads keep-alive,close,h2,rate h1,rate h2] [--max-steal 0.05] [--retries 2] [--json]
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateDefaultCertificate } from '../src/ingress/tls.ts';
import { backend, config, rule, vhost } from '../test/helpers/ingress-config.ts';
import { IngressNetns, parseH2load, ProxyProcess } from '../test/helpers/ingress-lab.ts';
import { startNginxBackend } from './lib/nginx-backend.ts';
import { hostStealSeconds, median, percentile, ratio } from './lib/tools.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    proxies: { type: 'string', default: 'nginx,haproxy,tapir' },
    json: { type: 'boolean', default: false },
    warmup: { type: 'string', default: '2' },
    rate: { type: 'string', default: '5000' },
    loads: { type: 'string', default: 'keep-alive,close,h2,rate h1,rate h2' },
    'max-steal': { type: 'string', default: '0.05' },
    retries: { type: 'string', default: '2' },
  },
});
const SECONDS = Number(values.seconds);
/** Seconds of each load per proxy before the first run, not recorded (JIT, heap growth, TLS session set-up). */
const WARMUP = Number(values.warmup);
const RUNS = Number(values.runs);
/** Cores the host may take during a measurement before it is taken again. */
const MAX_STEAL = Number(values['max-steal']);
const RETRIES = Number(values.retries);
/** Requests per second of the fixed-rate loads, in all. */
const RATE = Number(values.rate);
/** Clients of the fixed-rate loads, each with one request in flight. */
const RATE_CLIENTS = 16;
const PROXIES = values.proxies.split(',') as ProxyName[];
type ProxyName = 'nginx' | 'haproxy' | 'tapir' | 'tapir-node-h2' | 'tapir-node-net';
if (!(SECONDS > 0 && RUNS > 0 && RATE >= RATE_CLIENTS && MAX_STEAL >= 0 && Number.isInteger(RETRIES) && RETRIES >= 0) || !PROXIES.every((p) => ['nginx', 'haproxy', 'tapir', 'tapir-node-h2', 'tapir-node-net'].includes(p))) {
  console.error('usage: node bench/ingress.ts [--seconds 5] [--runs 3] [--warmup 2] [--rate 5000] [--proxies nginx,haproxy,tapir[,tapir-node-h2,tapir-node-net]] [--loads keep-alive,close,h2,rate h1,rate h2] [--max-steal 0.05] [--retries 2] [--json]');
  process.exit(2);
}
if (availableParallelism() < 2) {
  console.error('bench/ingress.ts needs 2 cores (the proxy on core 0, backend and load on core 1)');
  process.exit(2);
}

const PROXY_CORE = 0, LOAD_CORE = 1;
const ENDPOINTS = [{ ip: '127.0.0.11', port: 8080 }, { ip: '127.0.0.12', port: 8080 }];
/** Ports of each proxy in the namespace: [HTTP, HTTPS]. */
const PORTS: Record<ProxyName, [number, number]> = { tapir: [80, 443], nginx: [81, 444], haproxy: [82, 445], 'tapir-node-h2': [83, 446], 'tapir-node-net': [84, 447] };
const MODES = ['keep-alive', 'close', 'h2', 'rate h1', 'rate h2'] as const;
type Mode = (typeof MODES)[number];
/** The loads asked for (--loads), in MODES' order. */
const ASKED = values.loads.split(',');
const LOADS = MODES.filter((m) => ASKED.includes(m));
if (LOADS.length !== ASKED.length) {
  console.error(`bench/ingress.ts: --loads takes some of ${MODES.join(', ')}`);
  process.exit(2);
}
/** The loads each proxy is measured on: tapir-node-h2 differs from tapir on h2 only, tapir-node-net on plain HTTP/1.1 only. */
const modesOf = (p: ProxyName): readonly Mode[] => LOADS.filter((m) => p === 'tapir-node-h2' ? m === 'h2' || m === 'rate h2'
  : p === 'tapir-node-net' ? m !== 'h2' && m !== 'rate h2' : true);

const STARTED = Date.now();
const LOAD_AT_START = loadavg();
function progress(line: string): void {
  process.stderr.write(`[${((Date.now() - STARTED) / 1000).toFixed(1).padStart(6)}] ${line}\n`);
}

/** One measurement; steal: cores the host ran others on meanwhile (both cores together). */
interface Sample { rps: number; p50ms: number; p99ms: number; cpu: number; failed: number; rssMb: number; steal: number; /** Set when recorded. */ run?: number }

/** CPU seconds of a process and its direct children (nginx's workers), from /proc. */
function treeCpuSeconds(pid: number): number {
  const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try { stat = readFileSync(`/proc/${entry}/stat`, 'utf8'); } catch { continue; }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    if (Number(entry) === pid || ppid === pid) total += (Number(fields[11]) + Number(fields[12])) / ticks;
  }
  return total;
}

/** Resident memory (MiB) of a process and its direct children, after a measurement. */
function treeRssMb(pid: number): number {
  let kb = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let status: string;
    try { status = readFileSync(`/proc/${entry}/status`, 'utf8'); } catch { continue; }
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
    if (Number(entry) === pid || ppid === pid) kb += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return kb / 1024;
}

/** wrk's "Latency Distribution" value ("635.00us", "2.10ms", "1.02s") in ms. */
function wrkMs(text: string, pct: string): number {
  const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(text);
  if (m === null) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

async function measure(ns: IngressNetns, pid: number | null, mode: Mode, ip: string, port: number, tlsPort: number, work: string, seconds = SECONDS): Promise<Sample> {
  const cpu0 = pid === null ? 0 : treeCpuSeconds(pid);
  const steal0 = hostStealSeconds();
  const t0 = performance.now();
  let sample: Sample;
  if (mode === 'h2' || mode === 'rate h1' || mode === 'rate h2') {
    const log = join(work, 'h2load.log');
    const load = mode === 'h2' ? ['-c', '16', '-m', '10', `https://${ip}:${tlsPort}/fixed`]
      : ['-c', String(RATE_CLIENTS), '-m', '1', '--rps', String(RATE / RATE_CLIENTS), ...(mode === 'rate h1' ? ['--h1', `http://${ip}:${port}/fixed`] : [`https://${ip}:${tlsPort}/fixed`])];
    const r = await ns.execAsync('taskset', ['-c', String(LOAD_CORE), 'h2load', '-D', String(seconds), ...load, '--log-file', log], (SECONDS + 30) * 1000);
    const s = parseH2load(r.stdout);
    const durations = readFileSync(log, 'utf8').split('\n').filter((l) => l !== '').map((l) => Number(l.split('\t')[2]) / 1000);
    sample = { rps: s.rps, p50ms: percentile(durations, 0.5), p99ms: percentile(durations, 0.99), cpu: 0, failed: s.failed + s.errored + s.timeout + s.s4xx + s.s5xx, rssMb: 0, steal: 0 };
  } else {
    const args = ['-c', String(LOAD_CORE), 'wrk', '-t1', '-c', mode === 'close' ? '16' : '64', '-d', `${seconds}s`, '--latency'];
    if (mode === 'close') args.push('-H', 'Connection: close');
    const r = await ns.execAsync('taskset', [...args, `http://${ip}:${port}/fixed`], (SECONDS + 30) * 1000);
    const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
    if (rps === null) throw new Error(`wrk printed no rate: ${r.stdout}${r.stderr}`);
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
    const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
    // wrk counts a server's close after `Connection: close` as a read error: only connect/write/timeout are failures.
    const errors = sock === null ? 0 : Number(sock[1]) + Number(sock[3]) + Number(sock[4]);
    sample = { rps: Number(rps[1]), p50ms: wrkMs(r.stdout, '50'), p99ms: wrkMs(r.stdout, '99'), cpu: 0, failed: non2xx + errors, rssMb: 0, steal: 0 };
  }
  const wall = (performance.now() - t0) / 1000;
  sample.cpu = pid === null ? NaN : (treeCpuSeconds(pid) - cpu0) / wall;
  sample.rssMb = pid === null ? NaN : treeRssMb(pid);
  sample.steal = (hostStealSeconds() - steal0) / wall;
  return sample;
}

/** measure(), taken again while the host stole more than --max-steal during it (at most --retries times). */
async function measureQuiet(label: string, ...args: Parameters<typeof measure>): Promise<Sample> {
  for (let attempt = 0; ; attempt++) {
    const s = await measure(...args);
    if (s.steal <= MAX_STEAL || attempt >= RETRIES) return s;
    progress(`  ~ ${label}: the host took ${s.steal.toFixed(2)} cores meanwhile (${s.rps.toFixed(0)} req/s, p99 ${s.p99ms.toFixed(2)} ms); measuring again`);
  }
}

/** nginx as ingress-nginx configures it for one route, without its Lua balancer and access log (nginx at its cheapest). */
function nginxProxyConf(dir: string, cert: string, key: string): string {
  const [http, https] = PORTS.nginx;
  return `worker_processes 1;
daemon off;
pid ${dir}/proxy.pid;
error_log ${dir}/proxy.err warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path ${dir}/p-body; proxy_temp_path ${dir}/p-proxy; fastcgi_temp_path ${dir}/p-fcgi; uwsgi_temp_path ${dir}/p-uwsgi; scgi_temp_path ${dir}/p-scgi;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  upstream upstream_balancer {
${ENDPOINTS.map((e) => `    server ${e.ip}:${e.port};`).join('\n')}
    keepalive 320;
    keepalive_requests 10000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${http} default_server backlog=4096;
    listen 127.0.0.1:${https} default_server ssl http2 backlog=4096;
    server_name _;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://upstream_balancer;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_connect_timeout 5s;
      proxy_read_timeout 60s;
      client_max_body_size 1m;
    }
  }
}
`;
}

function haproxyConf(pem: string): string {
  const [http, https] = PORTS.haproxy;
  return `global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 75s
  timeout server 60s
  timeout http-keep-alive 75s
  option http-keep-alive
  http-reuse always
frontend ingress
  bind 127.0.0.1:${http}
  bind 127.0.0.1:${https} ssl crt ${pem} alpn h2,http/1.1
  option forwardfor
  unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid
  http-request set-header X-Request-ID %[unique-id]
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  default_backend upstream
backend upstream
  balance roundrobin
${ENDPOINTS.map((e, i) => `  server ep${i} ${e.ip}:${e.port}`).join('\n')}
`;
}

async function waitListening(ns: IngressNetns, ip: string, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await ns.execAsync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', `http://${ip}:${port}/fixed`], 5_000);
    if (r.stdout === '200') return;
    await new Promise((res) => setTimeout(res, 100));
  }
  const logs = ['haproxy.err', 'proxy.err', 'backend.err'].map((f) => join(ns.dir, f)).filter((f) => existsSync(f)).map((f) => `${f}:\n${readFileSync(f, 'utf8')}`).join('\n');
  throw new Error(`nothing answers 200 on ${ip}:${port} in the namespace\n${logs}`);
}

const tapirProcesses: ProxyProcess[] = [];

async function main(): Promise<void> {
  const ns = new IngressNetns('tbing-');
  const cleanup = (): void => ns.destroy();
  process.once('SIGINT', () => { cleanup(); process.exit(130); });
  process.once('SIGTERM', () => { cleanup(); process.exit(143); });
  try {
    // Short-lived connections by the ten thousand: reuse TIME_WAIT ports in this namespace only.
    ns.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65000']);
    const work = ns.dir;
    const cert = generateDefaultCertificate(['127.0.0.1']);
    const certFile = join(work, 'tls.crt'), keyFile = join(work, 'tls.key'), pemFile = join(work, 'tls.pem');
    writeFileSync(certFile, cert.certPem);
    writeFileSync(keyFile, cert.keyPem);
    writeFileSync(pemFile, cert.certPem + cert.keyPem);

    startNginxBackend(ns, LOAD_CORE, ENDPOINTS.map((e) => `${e.ip}:${e.port}`));
    for (const e of ENDPOINTS) await waitListening(ns, e.ip, e.port);
    const pids: Partial<Record<ProxyName, number>> = {};
    const children: ChildProcess[] = [];
    if (PROXIES.includes('nginx')) {
      writeFileSync(join(work, 'nginx-proxy.conf'), nginxProxyConf(work, certFile, keyFile));
      const c = ns.spawn('taskset', ['-c', String(PROXY_CORE), 'nginx', '-p', work, '-e', join(work, 'proxy.err'), '-c', join(work, 'nginx-proxy.conf')]);
      children.push(c);
      pids.nginx = c.pid!;
    }
    if (PROXIES.includes('haproxy')) {
      writeFileSync(join(work, 'haproxy.cfg'), haproxyConf(pemFile));
      const c = ns.spawn('taskset', ['-c', String(PROXY_CORE), 'haproxy', '-db', '-f', join(work, 'haproxy.cfg')]);
      c.stderr!.pipe(createWriteStream(join(work, 'haproxy.err')));
      children.push(c);
      pids.haproxy = c.pid!;
    }
    const startTapir = async (name: 'tapir' | 'tapir-node-h2' | 'tapir-node-net'): Promise<ProxyProcess> => {
      if (name === 'tapir-node-h2') process.env.TAPIR_INGRESS_NODE_H2 = '1';
      if (name === 'tapir-node-net') process.env.TAPIR_INGRESS_NODE_NET = '1';
      try {
        const t = await ProxyProcess.start(ns, { http: PORTS[name][0], https: PORTS[name][1], ...cert, cpu: PROXY_CORE, address: '127.0.0.1', nodeArgs: (process.env.TAPIR_INGRESS_NODE_ARGS ?? '').split(' ').filter((a) => a !== '') });
        tapirProcesses.push(t);
        await t.setConfig(config([vhost('', [rule('Prefix', '/', backend('bench/backend:80', ENDPOINTS))])]));
        pids[name] = t.child.pid!;
        progress(`${name}: h2 served by ${t.h2Engine === 'native' ? "the addon's nghttp2 session" : 'node:http2'}, plain HTTP/1.1 on ${t.h1Wire === 'native' ? "the addon's sockets" : t.h1Wire}`);
        return t;
      } finally {
        delete process.env.TAPIR_INGRESS_NODE_H2;
        delete process.env.TAPIR_INGRESS_NODE_NET;
      }
    };
    const tapir = PROXIES.includes('tapir') ? await startTapir('tapir') : null;
    if (PROXIES.includes('tapir-node-h2')) await startTapir('tapir-node-h2');
    if (PROXIES.includes('tapir-node-net')) await startTapir('tapir-node-net');
    for (const p of PROXIES) await waitListening(ns, '127.0.0.1', PORTS[p][0]);
    progress(`proxies up (${PROXIES.join(', ')}) on core ${PROXY_CORE}; backend nginx and load on core ${LOAD_CORE}; ${SECONDS} s per measurement, ${RUNS} runs`);

    if (WARMUP > 0) {
      for (const p of PROXIES) {
        for (const mode of modesOf(p)) await measure(ns, pids[p]!, mode, '127.0.0.1', PORTS[p][0], PORTS[p][1], work, WARMUP).catch(() => null);
      }
      progress(`warmed up: ${WARMUP} s of each load per proxy`);
    }
    const samples = new Map<string, Sample[]>();
    const add = (key: string, s: Sample, run: number): void => { samples.set(key, [...(samples.get(key) ?? []), { ...s, run }]); };
    for (let run = 1; run <= RUNS; run++) {
      for (const mode of (['keep-alive', 'close'] as const).filter((m) => LOADS.includes(m))) {
        const s = await measureQuiet(`direct ${mode}`, ns, null, mode, ENDPOINTS[0]!.ip, ENDPOINTS[0]!.port, 0, work).catch((e: Error) => { progress(`  ! direct ${mode}: ${e.message}`); return null; });
        if (s !== null) { add(`direct|${mode}`, s, run); progress(`run ${run} direct ${mode}: ${s.rps.toFixed(0)} req/s p50 ${s.p50ms.toFixed(2)} ms p99 ${s.p99ms.toFixed(2)} ms, steal ${s.steal.toFixed(2)}`); }
      }
      for (const p of PROXIES) {
        for (const mode of modesOf(p)) {
          const s = await measureQuiet(`${p} ${mode}`, ns, pids[p]!, mode, '127.0.0.1', PORTS[p][0], PORTS[p][1], work).catch((e: Error) => { progress(`  ! ${p} ${mode}: ${e.message}`); return null; });
          if (s === null) continue;
          add(`${p}|${mode}`, s, run);
          progress(`run ${run} ${p} ${mode}: ${s.rps.toFixed(0)} req/s (${(s.rps / s.cpu).toFixed(0)} per core, cpu ${(s.cpu * 100).toFixed(0)}%) p50 ${s.p50ms.toFixed(2)} ms p99 ${s.p99ms.toFixed(2)} ms, RSS ${s.rssMb.toFixed(0)} MiB, steal ${s.steal.toFixed(2)}${s.failed > 0 ? `, ${s.failed} failed` : ''}`);
        }
      }
    }

    // Configuration change: 1,000 hosts with 2 paths each, to the proxy's acknowledgement.
    let swapMs: number[] = [];
    if (tapir !== null) {
      const big = (g: number) => config(Array.from({ length: 1000 }, (_, i) => vhost(`host-${i}.example`, [
        rule('Prefix', '/api', backend(`bench/api-${i}:80`, ENDPOINTS)), rule('Exact', '/health', backend(`bench/health-${i}:80`, ENDPOINTS)),
      ])).concat([vhost('', [rule('Prefix', '/', backend('bench/backend:80', ENDPOINTS))])]), { generation: g });
      for (let i = 0; i < 7; i++) {
        const t0 = performance.now();
        await tapir.setConfig(big(100 + i));
        swapMs.push(performance.now() - t0);
      }
      swapMs = swapMs.slice(2);
      const check = await ns.execAsync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--resolve', 'host-999.example:80:127.0.0.1', 'http://host-999.example/health'], 5_000);
      if (check.stdout !== '200') progress(`  ! after the big configuration, host-999.example/health answered ${check.stdout}`);
    }

    // ---- report ---------------------------------------------------------------------
    const summary = (key: string) => {
      const xs = samples.get(key) ?? [];
      const pick = (f: (s: Sample) => number) => ({ median: median(xs.map(f)), min: Math.min(...xs.map(f)), max: Math.max(...xs.map(f)) });
      return { runs: xs.length, rps: pick((s) => s.rps), rpsPerCore: pick((s) => s.rps / s.cpu), cpu: pick((s) => s.cpu), p50ms: pick((s) => s.p50ms), p99ms: pick((s) => s.p99ms), rssMb: pick((s) => s.rssMb), steal: pick((s) => s.steal), failed: xs.reduce((a, s) => a + s.failed, 0) };
    };
    const results: Record<string, Record<string, ReturnType<typeof summary>>> = {};
    for (const p of ['direct', ...PROXIES]) {
      results[p] = {};
      for (const mode of p === 'direct' ? ['keep-alive', 'close'] : MODES) if (samples.has(`${p}|${mode}`)) results[p]![mode] = summary(`${p}|${mode}`);
    }
    const ratios: Record<string, Record<string, { rps: string; rpsPerCore: string; p99: string; p99ByRun: string[]; p99ByRunMedian: string }>> = {};
    for (const p of PROXIES) {
      if (p === 'nginx' || results.nginx === undefined) continue;
      ratios[`${p}/nginx`] = {};
      for (const mode of MODES) {
        const a = results[p]![mode], b = results.nginx[mode];
        if (a === undefined || b === undefined) continue;
        // p99 against nginx's in the same run.
        const byRun = (samples.get(`${p}|${mode}`) ?? []).flatMap((x) => {
          const y = samples.get(`nginx|${mode}`)?.find((n) => n.run === x.run);
          return y === undefined ? [] : [x.p99ms / y.p99ms];
        });
        ratios[`${p}/nginx`]![mode] = {
          rps: ratio(a.rps.median, b.rps.median), rpsPerCore: ratio(a.rpsPerCore.median, b.rpsPerCore.median), p99: ratio(a.p99ms.median, b.p99ms.median),
          p99ByRun: byRun.map((r) => `${r.toFixed(2)}x`), p99ByRunMedian: byRun.length === 0 ? '-' : `${median(byRun).toFixed(2)}x`,
        };
      }
    }
    const doc = {
      bench: 'ingress', seconds: SECONDS, runs: RUNS, cores: availableParallelism(), loadAtStart: LOAD_AT_START, loadAtEnd: loadavg(),
      placement: { proxy: `core ${PROXY_CORE}`, backendAndLoad: `core ${LOAD_CORE}`, backend: 'nginx return 200 "ok\\n" on two addresses' },
      clients: { 'keep-alive': 'wrk -t1 -c64', close: 'wrk -t1 -c16 -H "Connection: close"', h2: 'h2load -c16 -m10 (TLS, ALPN h2)',
        'rate h1': `h2load --h1 -c${RATE_CLIENTS} -m1 --rps ${RATE / RATE_CLIENTS} (${RATE} req/s in all)`, 'rate h2': `h2load -c${RATE_CLIENTS} -m1 --rps ${RATE / RATE_CLIENTS} (TLS, ALPN h2; ${RATE} req/s in all)` },
      results, ratios,
      configChange: tapir === null ? null : { hosts: 1000, paths: 2000, setConfigToServingMs: { median: median(swapMs), min: Math.min(...swapMs), max: Math.max(...swapMs) } },
    };
    if (values.json) {
      console.log(JSON.stringify(doc, null, 2));
      return;
    }
    const f = (x: { median: number; min: number; max: number }, digits = 0): string => `${x.median.toFixed(digits)} (${x.min.toFixed(digits)}-${x.max.toFixed(digits)})`;
    console.log(`\nIngress proxies, ${RUNS} runs of ${SECONDS} s, median (min-max); proxy on core ${PROXY_CORE}, backend and load on core ${LOAD_CORE}; load average ${LOAD_AT_START.map((x) => x.toFixed(1)).join(' ')} at the start`);
    console.log(`${'proxy'.padEnd(8)} ${'load'.padEnd(11)} ${'req/s'.padEnd(22)} ${'req/s per core'.padEnd(22)} ${'cpu %'.padEnd(14)} ${'p50 ms'.padEnd(20)} ${'p99 ms'.padEnd(20)} ${'RSS MiB'.padEnd(8)} ${'steal'.padEnd(6)} failed`);
    for (const [p, modes] of Object.entries(results)) {
      for (const [mode, r] of Object.entries(modes)) {
        const cpu = { median: r.cpu.median * 100, min: r.cpu.min * 100, max: r.cpu.max * 100 };
        console.log(`${p.padEnd(8)} ${mode.padEnd(11)} ${f(r.rps).padEnd(22)} ${(p === 'direct' ? '-' : f(r.rpsPerCore)).padEnd(22)} ${(p === 'direct' ? '-' : f(cpu)).padEnd(14)} ${f(r.p50ms, 2).padEnd(20)} ${f(r.p99ms, 2).padEnd(20)} ${(p === 'direct' ? '-' : r.rssMb.median.toFixed(0)).padEnd(8)} ${r.steal.median.toFixed(2).padEnd(6)} ${r.failed}`);
      }
    }
    for (const [name, modes] of Object.entries(ratios)) {
      console.log(`${name}: ${Object.entries(modes).map(([m, r]) => `${m} req/s ${r.rps}, per core ${r.rpsPerCore}, p99 ${r.p99} (run by run ${r.p99ByRun.join(' ')}: median ${r.p99ByRunMedian})`).join('; ')}`);
    }
    if (doc.configChange !== null) console.log(`config change (1,000 hosts, 2,000 paths) to served: ${f(doc.configChange.setConfigToServingMs, 1)} ms`);
    for (const c of children) c.kill('SIGTERM');
  } finally {
    for (const t of tapirProcesses) await t.stop();
    cleanup();
  }
}

await main();

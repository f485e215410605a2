// Churn soak (issue 8): Services and endpoints change every 100 ms for --seconds (600)
// while clients loop HTTP requests through a ClusterIP (pod web-1b) and a NodePort on
// both nodes (the external client). The tested Service's endpoint pods never stop, so
// every request goes to a live endpoint and a failed request is a Tapir bug. Pods are
// also created and deleted (--pod-churn-seconds): they join the tested Service when
// ready and leave it terminating for the lab's grace period; requests they answered
// and failures during their deletion are counted apart.
//
// Every 10 s: requests ok/failed, each agent's RSS, heap, open fds and conntrack entries,
// the lab's namespaces and TAP/TUN devices. At the end: the table, then a verdict per
// criterion (no failed request; no agent restart; RSS flat: its high-water mark rises
// at most --max-rss-slope MiB/min over the second half; fds, TAPs, TUNs and namespaces
// as at the start; conntrack back to its level before the clients once TIME_WAIT
// (120 s) and a GC sweep have passed, --drain-seconds). Exits 1 if any fails. Ctrl-C
// takes the lab down.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BenchLab, checkInterrupted, downLabsOnSignal, run, sleep, TAPIR } from './lib/lab.ts';
import { Churn, churnPodManifest, HTTP_CLIENT, parseClient, sampleLab, slope, SOAK_NODE_PORT, type ClientReport, type LabSample } from '../test/helpers/churn.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '600' },
    'interval-ms': { type: 'string', default: '100' },
    'sample-seconds': { type: 'string', default: '10' },
    rate: { type: 'string', default: '50' },
    'pod-churn-seconds': { type: 'string', default: '30' },
    'min-endpoints': { type: 'string', default: '1' },
    'drain-seconds': { type: 'string', default: '160' },
    'max-rss-slope': { type: 'string', default: '1' },
  },
});
const SECONDS = Number(values.seconds);
const INTERVAL_MS = Number(values['interval-ms']);
const SAMPLE_S = Number(values['sample-seconds']);
const RATE = Number(values.rate);
const POD_CHURN_S = Number(values['pod-churn-seconds']);
const DRAIN_S = Number(values['drain-seconds']);
const MAX_RSS_SLOPE = Number(values['max-rss-slope']);

const ENDPOINT_PODS = ['web-1a', 'web-2a', 'web-2b'];
const CLIENT_POD = 'web-1b';

interface Row { t: number; phase: string; sample: LabSample; pod: ClientReport; ext: ClientReport }

function fmt(x: number, digits = 0): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

async function main(): Promise<number> {
  const tmp = mkdtempSync(join(tmpdir(), 'churn-soak-'));
  downLabsOnSignal(() => rmSync(tmp, { recursive: true, force: true }));
  const lab = new BenchLab('tapir');
  try {
    await lab.up();
    const churn = new Churn({ stateDir: lab.stateDir, endpointPods: ENDPOINT_PODS, minEndpoints: Number(values['min-endpoints']), seed: 8 });
    await churn.setup();
    const nodeIPs = ['172.30.0.11', '172.30.0.12'];
    // Until both agents serve the new Service (bounded).
    for (let i = 0; ; i++) {
      const a = await run([TAPIR, 'lab', 'exec', '--name', lab.name, CLIENT_POD, '--', 'curl', '-sf', '--max-time', '2', `http://${churn.clusterIP}/`], 10_000);
      const b = await run([TAPIR, 'lab', 'exec', '--name', lab.name, 'client', '--', 'curl', '-sf', '--max-time', '2', `http://${nodeIPs[1]}:${SOAK_NODE_PORT}/`], 10_000);
      if (a.code === 0 && b.code === 0) break;
      if (i === 30) throw new Error(`service soak (${churn.clusterIP}) does not answer: ${a.stderr} ${b.stderr}`);
      await sleep(1000);
    }
    const start = await sampleLab(lab.name);
    const cpu0 = lab.cpu();
    const t0 = Date.now() / 1000;
    const empty = parseClient('');
    const rows: Row[] = [{ t: 0, phase: 'start', sample: start, pod: empty, ext: empty }];
    console.log(`lab ${lab.name}: service soak ${churn.clusterIP}:80 and node port ${SOAK_NODE_PORT}; endpoints ${ENDPOINT_PODS.join(', ')} (at least ${values['min-endpoints']} in), a change every ${INTERVAL_MS} ms for ${SECONDS} s`);

    const limit = Math.ceil(SECONDS + 30);
    const podClient = lab.background(CLIENT_POD, limit, ['python3', '-c', HTTP_CLIENT, `http://${churn.clusterIP}/`, String(SECONDS), String(RATE)]);
    const extClient = lab.background('client', limit, ['python3', '-c', HTTP_CLIENT, nodeIPs.map((ip) => `http://${ip}:${SOAK_NODE_PORT}/`).join(','), String(SECONDS), String(RATE)]);
    const end = t0 + SECONDS;
    const now = (): number => Date.now() / 1000;

    // The 100 ms churn: a step, then sleep what is left of the interval.
    let late = 0;
    const churnLoop = (async () => {
      while (now() < end) {
        checkInterrupted();
        const s = performance.now();
        await churn.step();
        const left = INTERVAL_MS - (performance.now() - s);
        if (left > 0) await sleep(left); else late++;
      }
      await churn.finish();
    })().then(() => null, (err: unknown) => err);

    // Pod churn: apply a pod, let it serve, delete it (grace period, then gone).
    const deletions: [number, number][] = [];
    let podsCreated = 0, podFailures = 0;
    const podLoop = (async () => {
      if (POD_CHURN_S <= 0) return;
      for (let k = 0; now() + POD_CHURN_S < end; k++) {
        checkInterrupted();
        const cycle = now();
        const name = `soak-pod-${k}`;
        const file = join(tmp, `${name}.yaml`);
        writeFileSync(file, churnPodManifest(name, k % 2 === 0 ? 'node-1' : 'node-2'));
        const applied = await lab.apply(file, 60_000);
        if (applied.code !== 0) { podFailures++; console.error(`apply ${name}: ${applied.stderr.trim()}`); }
        else podsCreated++;
        await sleep(Math.max(0, cycle + POD_CHURN_S / 2 - now()) * 1000);
        const d0 = now();
        const deleted = await run([TAPIR, 'lab', 'delete', '--name', lab.name, '-f', file], 60_000);
        deletions.push([d0, now()]);
        if (deleted.code !== 0) { podFailures++; console.error(`delete ${name}: ${deleted.stderr.trim()}`); }
        await sleep(Math.max(0, cycle + POD_CHURN_S - now()) * 1000);
      }
    })().then(() => null, (err: unknown) => err);

    const sampleRow = async (phase: string): Promise<void> => {
      const sample = await sampleLab(lab.name);
      rows.push({ t: sample.time - t0, phase, sample, pod: parseClient(podClient.output()), ext: parseClient(extClient.output()) });
      const r = rows.at(-1)!;
      console.log(`${fmt(r.t)} s: ok ${r.pod.ok + r.ext.ok}, failed ${r.pod.failed + r.ext.failed}; ${sample.nodes.map((n) => `${n.node} rss ${fmt(n.rssMiB, 1)} anon ${fmt(n.anonMiB, 1)} heap ${fmt(n.heapUsedMiB, 1)} fds ${n.fds} ct ${n.conntrack}`).join('; ')}; taps ${sample.taps} netns ${sample.netns}`);
    };
    while (now() < end) {
      await sleep(Math.min(SAMPLE_S * 1000, Math.max(0, (end - now()) * 1000)));
      checkInterrupted();
      if (now() < end - 1) await sampleRow('churn');
    }
    // Rejections (an interrupt stops the loops with BenchInterrupted) are rethrown here,
    // not left unhandled meanwhile: that would end the process before the lab is down.
    for (const outcome of await Promise.all([churnLoop, podLoop])) if (outcome !== null) throw outcome;
    const pod = parseClient(await podClient.stop(20_000));
    const ext = parseClient(await extClient.stop(20_000));
    const cpu1 = lab.cpu();
    await sampleRow('end');
    rows.at(-1)!.pod = pod;
    rows.at(-1)!.ext = ext;
    const endSample = rows.at(-1)!.sample;

    // Conntrack drain: closed flows leave after TIME_WAIT (120 s) plus a GC sweep.
    const drainEnd = now() + DRAIN_S;
    while (now() < drainEnd) {
      await sleep(Math.min(SAMPLE_S * 1000, Math.max(0, (drainEnd - now()) * 1000)));
      checkInterrupted();
      await sampleRow('drain');
    }
    const last = rows.at(-1)!.sample;

    // ---- report ----
    console.log('');
    console.log(`| t (s) | phase | requests ok | failed | ${start.nodes.map((n) => `${n.node} RSS MiB | anon MiB | heap MiB | fds | conntrack`).join(' | ')} | TAPs | TUNs | netns |`);
    console.log(`|${'---|'.repeat(4 + start.nodes.length * 5 + 3)}`);
    for (const r of rows) {
      console.log(`| ${fmt(r.t)} | ${r.phase} | ${r.pod.ok + r.ext.ok} | ${r.pod.failed + r.ext.failed} | ${r.sample.nodes.map((n) => `${fmt(n.rssMiB, 1)} | ${fmt(n.anonMiB, 1)} | ${fmt(n.heapUsedMiB, 1)} | ${n.fds} | ${n.conntrack}`).join(' | ')} | ${r.sample.taps} | ${r.sample.tuns} | ${r.sample.netns} |`);
    }
    console.log('');
    const wall = SECONDS;
    console.log(`changes: ${churn.counts.steps} in ${wall} s (${fmt(churn.counts.steps / wall, 1)}/s; ${late} steps overran ${INTERVAL_MS} ms): endpoints in ${churn.counts.endpointsIn}, out ${churn.counts.endpointsOut}; services created ${churn.counts.servicesCreated}, deleted ${churn.counts.servicesDeleted}; ports added ${churn.counts.portsAdded}, removed ${churn.counts.portsRemoved}; pods created and deleted ${podsCreated} (${podFailures} apply/delete failures)`);
    console.log(`requests: ClusterIP from ${CLIENT_POD} ${pod.ok} ok, ${pod.failed} failed, ${pod.slow} slow (>1 s); NodePort from the client ${ext.ok} ok, ${ext.failed} failed, ${ext.slow} slow`);
    const servedBy = (r: ClientReport): string => Object.entries(r.servedBy).sort().map(([k, v]) => `${k} ${v}`).join(', ');
    const byChurned = (r: ClientReport): number => Object.entries(r.servedBy).filter(([k]) => k.startsWith('soak-pod-')).reduce((s, [, v]) => s + v, 0);
    console.log(`answered by: ClusterIP ${servedBy(pod)}; NodePort ${servedBy(ext)}; by churned pods ${byChurned(pod) + byChurned(ext)}`);
    const failures = [...pod.failures, ...ext.failures];
    const inDeletion = failures.filter(([t]) => deletions.some(([a, b]) => t >= a - 1 && t <= b + 1));
    for (const [t, url, error] of failures.slice(0, 20)) console.log(`  failed at ${fmt(t - t0, 1)} s: ${url} ${error}`);
    console.log(`CPU: agents ${fmt((cpu1.agents - cpu0.agents) / wall * 100)} % of a core, node daemons ${fmt((cpu1.daemons - cpu0.daemons) / wall * 100)} % (2 cores shared with the clients, the churn and other work on this machine)`);
    console.log('');

    const verdicts: [string, boolean, string][] = [];
    const failed = pod.failed + ext.failed;
    verdicts.push(['failed requests == 0', failed === 0 && pod.ok > 0 && ext.ok > 0, `${failed} failed of ${failed + pod.ok + ext.ok} (${inDeletion.length} while a churned pod was being deleted)`]);
    const restarts = endSample.nodes.map((n, i) => n.restarts - start.nodes[i]!.restarts);
    verdicts.push(['agent restarts == 0', restarts.every((r) => r === 0) && endSample.nodes.every((n, i) => n.pid === start.nodes[i]!.pid), endSample.nodes.map((n, i) => `${n.node} ${restarts[i]} (pid ${start.nodes[i]!.pid} -> ${n.pid})`).join(', ')]);
    // V8 grows its heap and gives memory back after a major collection: RSS is a saw-tooth
    // of 20-30 MiB with teeth minutes apart, so a least-squares slope over five minutes
    // says more about where the teeth fall than about a leak (one run measured 1.35
    // MiB/min with the second half's peak 2 MiB below the first's). The verdict takes the
    // high-water mark (the highest RSS so far) instead: a leak lifts every tooth, and with
    // it the mark, at the leak's rate; without one the mark stays where the first half left it.
    const churning = rows.filter((r) => r.phase === 'churn' || r.phase === 'end');
    const half = churning.filter((r) => r.t >= SECONDS / 2);
    const perMinute = (ys: number[]): number => slope(half.map((r) => r.t / 60), ys);
    for (let i = 0; i < start.nodes.length; i++) {
      const rss = churning.map((r) => r.sample.nodes[i]!.rssMiB);
      const mark = rss.map((_, k) => Math.max(...rss.slice(0, k + 1))).slice(churning.length - half.length);
      const markSlope = perMinute(mark);
      const rssSlope = perMinute(half.map((r) => r.sample.nodes[i]!.rssMiB));
      const anon = perMinute(half.map((r) => r.sample.nodes[i]!.anonMiB));
      const heap = perMinute(half.map((r) => r.sample.nodes[i]!.heapUsedMiB));
      const peak = (rs: Row[]): number => Math.max(...rs.map((r) => r.sample.nodes[i]!.rssMiB));
      const first = churning.filter((r) => r.t < SECONDS / 2);
      verdicts.push([`${start.nodes[i]!.node} RSS high-water slope over the second half <= ${MAX_RSS_SLOPE} MiB/min`, markSlope <= MAX_RSS_SLOPE,
        `${fmt(markSlope, 2)} MiB/min (least-squares slopes: RSS ${fmt(rssSlope, 2)}, anonymous ${fmt(anon, 2)}, heap used ${fmt(heap, 2)} MiB/min; RSS ${fmt(start.nodes[i]!.rssMiB, 1)} at the start, peaks ${fmt(peak(first), 1)} in the first half and ${fmt(peak(half), 1)} in the second, ${fmt(endSample.nodes[i]!.rssMiB, 1)} at the end)`]);
      verdicts.push([`${start.nodes[i]!.node} open fds as at the start`, endSample.nodes[i]!.fds === start.nodes[i]!.fds, `${start.nodes[i]!.fds} -> ${endSample.nodes[i]!.fds}`]);
    }
    verdicts.push(['TAPs and TUNs as at the start', endSample.taps === start.taps && endSample.tuns === start.tuns, `TAPs ${start.taps} -> ${endSample.taps}, TUNs ${start.tuns} -> ${endSample.tuns}`]);
    verdicts.push(['lab namespaces as at the start', endSample.netns === start.netns, `${start.netns} -> ${endSample.netns}`]);
    const ct0 = start.nodes.reduce((s, n) => s + n.conntrack, 0);
    const ctPeak = Math.max(...rows.map((r) => r.sample.nodes.reduce((s, n) => s + n.conntrack, 0)));
    const ctLast = last.nodes.reduce((s, n) => s + n.conntrack, 0);
    verdicts.push([`conntrack entries back to the level before the clients ${DRAIN_S} s after they stopped`, ctLast <= ct0, `${ct0} before, peak ${ctPeak}, ${ctLast} at the end`]);
    for (const [name, ok, detail] of verdicts) console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}: ${detail}`);
    return verdicts.every(([, ok]) => ok) ? 0 : 1;
  } finally {
    await lab.down();
    rmSync(tmp, { recursive: true, force: true });
  }
}

process.exitCode = await main();

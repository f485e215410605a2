// The Ingress proxy's per-request series (src/ingress/metrics.ts): counted in plain
// numbers and given to prom-client's Registry when scraped, in the exposition format
// prom-client's own Counter and Histogram write.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IngressMetrics } from '../src/ingress/metrics.ts';

/** The sample lines of an exposition text, as name{labels} -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

test('requests are counted by ingress, service and status', async () => {
  const m = new IngressMetrics(() => 0);
  m.request('default/web', 'default/a:80', 200, 0.002);
  m.request('default/web', 'default/a:80', 200, 0.004);
  m.request('default/web', 'default/a:80', 502, 0.03);
  m.request('default/web', 'default/b:80', 200, 0.001);
  m.request('', '', 404, 0.0001);
  const text = await m.registry.metrics();
  assert.match(text, /^# TYPE tapir_ingress_requests_total counter$/m);
  const s = samples(text);
  assert.equal(s.get('tapir_ingress_requests_total{ingress="default/web",service="default/a:80",status="200"}'), 2);
  assert.equal(s.get('tapir_ingress_requests_total{ingress="default/web",service="default/a:80",status="502"}'), 1);
  assert.equal(s.get('tapir_ingress_requests_total{ingress="default/web",service="default/b:80",status="200"}'), 1);
  assert.equal(s.get('tapir_ingress_requests_total{ingress="",service="",status="404"}'), 1);
  assert.equal([...s.keys()].filter((k) => k.startsWith('tapir_ingress_requests_total')).length, 4);
});

test('durations form a cumulative histogram with ingress-nginx\'s buckets, +Inf, sum and count', async () => {
  const m = new IngressMetrics(() => 0);
  // On a bound counts in that bucket (le: less than or equal), as in prom-client.
  for (const seconds of [0.005, 0.007, 0.3, 0.3, 12]) m.request('default/web', 'default/a:80', 200, seconds);
  const text = await m.registry.metrics();
  assert.match(text, /^# TYPE tapir_ingress_request_duration_seconds histogram$/m);
  const s = samples(text);
  const bucket = (le: string) => s.get(`tapir_ingress_request_duration_seconds_bucket{le="${le}",ingress="default/web",service="default/a:80"}`);
  assert.deepEqual(['0.005', '0.01', '0.25', '0.5', '10', '+Inf'].map(bucket), [1, 2, 2, 4, 4, 5]);
  assert.equal(s.get('tapir_ingress_request_duration_seconds_count{ingress="default/web",service="default/a:80"}'), 5);
  assert.ok(Math.abs(s.get('tapir_ingress_request_duration_seconds_sum{ingress="default/web",service="default/a:80"}')! - 12.612) < 1e-9);
});

test('the other metrics stay prom-client\'s, and resetMetrics clears the series', async () => {
  const m = new IngressMetrics(() => 7);
  m.request('default/web', 'default/a:80', 200, 0.002);
  m.retry('default/a:80', 'connect');
  m.config(3);
  const s = samples(await m.registry.metrics());
  assert.equal(s.get('tapir_ingress_upstream_retries_total{service="default/a:80",reason="connect"}'), 1);
  assert.equal(s.get('tapir_ingress_config_generation'), 3);
  assert.equal(s.get('tapir_ingress_upstream_dispatchers'), 7);
  m.registry.resetMetrics();
  const after = await m.registry.metrics();
  assert.doesNotMatch(after, /^tapir_ingress_requests_total/m);
  assert.doesNotMatch(after, /^tapir_ingress_request_duration_seconds_bucket/m);
});

// A client that watches Service traffic while something happens to the data plane (an
// agent killed and restarted): run inside a pod with `python3 -c FLOW_PROBE URL SECONDS`.
// Two threads, for SECONDS each:
//   stream  one keep-alive HTTP/1.1 connection, a request every 20 ms: does the
//           established connection survive, does it stay on its endpoint, and the
//           longest silence between two answers;
//   loop    a new connection per request, a request every 50 ms: how many fail (a
//           10 s timeout each, so a SYN retransmitted after a second still counts as ok)
//           and the slowest.
// Writes STREAM_UP to stderr once the keep-alive connection has its first answer (a
// test that breaks something waits for it: the connection is then established and
// tracked), and prints one JSON line (FlowProbeResult) at the end. Bounded in time:
// every socket has a timeout.

/** What the probe writes to stderr once its keep-alive connection has had an answer. */
export const STREAM_UP = 'stream-up';

export const FLOW_PROBE = String.raw`
import http.client, json, sys, threading, time, urllib.parse
url, seconds = urllib.parse.urlsplit(sys.argv[1]), float(sys.argv[2])
host, port = url.hostname, url.port or 80
end = time.time() + seconds
out = {}
def stream():
    r = {'requests': 0, 'error': None, 'pods': [], 'maxGapMs': 0}
    conn = http.client.HTTPConnection(host, port, timeout=10)
    last = time.time()
    try:
        while time.time() < end:
            conn.request('GET', '/stream', headers={'Connection': 'keep-alive'})
            body = conn.getresponse().read()
            now = time.time()
            r['maxGapMs'] = max(r['maxGapMs'], round((now - last) * 1000))
            last = now
            r['requests'] += 1
            if r['requests'] == 1: print('${STREAM_UP}', file=sys.stderr, flush=True)
            pod = json.loads(body).get('pod')
            if pod not in r['pods']: r['pods'].append(pod)
            time.sleep(0.02)
    except Exception as e:
        r['error'] = repr(e)
    out['stream'] = r
def loop():
    r = {'ok': 0, 'failed': 0, 'errors': [], 'maxMs': 0}
    while time.time() < end:
        t = time.time()
        try:
            c = http.client.HTTPConnection(host, port, timeout=10)
            c.request('GET', '/loop')
            c.getresponse().read()
            c.close()
            r['ok'] += 1
            r['maxMs'] = max(r['maxMs'], round((time.time() - t) * 1000))
        except Exception as e:
            r['failed'] += 1
            if len(r['errors']) < 5: r['errors'].append(repr(e))
        time.sleep(0.05)
    out['loop'] = r
threads = [threading.Thread(target=stream), threading.Thread(target=loop)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out), flush=True)
`;

export interface FlowProbeResult {
  stream: { requests: number; error: string | null; pods: string[]; maxGapMs: number };
  loop: { ok: number; failed: number; errors: string[]; maxMs: number };
}

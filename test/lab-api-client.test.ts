// The lab's own API client (src/lab/apiserver/client.ts): requests share kept-alive TLS
// connections, and a request the server resets on a reused connection (an idle one it
// closed just as the request went out) goes again on a new connection, once; a reset on a
// new connection is an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabApiClient } from '../src/lab/apiserver/client.ts';
import { ensureCertificates } from '../src/lab/apiserver/tls.ts';

test('kept-alive connections, and one retry of a request reset on a reused connection', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-api-client-'));
  const files = ensureCertificates(dir, ['127.0.0.1']);
  let connections = 0, answered = 0;
  const resets = new Set<string>();
  const server = createServer({ cert: readFileSync(files.cert), key: readFileSync(files.key) }, (req, res) => {
    // /reset-N: the first request for it is reset without an answer.
    if (req.url!.startsWith('/reset') && !resets.has(req.url!)) {
      resets.add(req.url!);
      req.socket.destroy();
      return;
    }
    answered++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ path: req.url, n: answered }));
  });
  server.on('secureConnection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new LabApiClient(url, files.caCert, 'token');
  try {
    for (let i = 0; i < 5; i++) assert.equal((await client.must('GET', `/a/${i}`)).path, `/a/${i}`);
    assert.equal(connections, 1, 'five requests, one connection');

    // Reset on the reused connection: sent again on a new one, and answered.
    assert.equal((await client.must('GET', '/reset-1')).path, '/reset-1');
    assert.equal(connections, 2);

    // Reset on a new connection: an error, no second try.
    const fresh = new LabApiClient(url, files.caCert, 'token');
    await assert.rejects(fresh.request('GET', '/reset-2'), /reset-2/);
    fresh.close();
    assert.equal(answered, 6);
  } finally {
    client.close();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});

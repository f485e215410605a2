// healthCheckNodePort listeners (kube-proxy's service health server): one per port of
// the snapshot's Services of both families, answering 200 with local endpoints and 503
// without, on every address of the node's stack (IPv4 and IPv6).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { HealthCheckServers } from '../src/control/health-check-server.ts';
import { endpoint, endpoint6, servicePort, servicePort6 } from '../src/model/synthetic.ts';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

test('health check node ports of IPv4 and IPv6-only Services answer over both families', async () => {
  const [p4, p6] = [await freePort(), await freePort()];
  const health = new HealthCheckServers();
  try {
    health.update({
      generation: 1, nodePortAddresses: [],
      ports: [servicePort({ name: 'four', clusterIP: '10.96.0.20', nodePort: 30001, externalLocal: true, healthCheckNodePort: p4, allEndpoints: [endpoint('10.244.1.5', 80, { local: true })] })],
      ports6: [servicePort6({ name: 'six', clusterIP: 'fd00:10:96::20', nodePort: 30002, externalLocal: true, healthCheckNodePort: p6, allEndpoints: [endpoint6('fd00:10:244:2::5', 80)] })],
    });
    assert.deepEqual(health.ports, [p4, p6].sort((a, b) => a - b));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const four = await fetch(`http://[::1]:${p4}/healthz`);
    assert.equal(four.status, 200);
    assert.deepEqual((await four.json() as { service: unknown }).service, { namespace: 'default', name: 'four' });
    const six = await fetch(`http://127.0.0.1:${p6}/healthz`);
    assert.equal(six.status, 503, 'the IPv6-only Service has no local endpoint here');
    assert.equal((await six.json() as { localEndpoints: number }).localEndpoints, 0);
  } finally {
    health.close();
  }
});

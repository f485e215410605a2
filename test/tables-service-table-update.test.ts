// Incremental service table updates against the whole build, the reference: after
// every step of random change sequences (endpoints added, removed, moved, made local;
// balancing, affinity and traffic policy switched; now and then a frontend change or
// a port added, which must fall back to the whole build), the updated table answers
// every lookup the NAT engine makes exactly as a table built whole from the same
// snapshot. The arrays' layout differs (appended lists, garbage), so the comparison is
// over what each port resolves to, not over raw arrays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NODE_PORT_ADDR } from '../src/tables/service-frontends.ts';
import { ServiceTable, buildServiceTable, updateServiceTable } from '../src/tables/service-table.ts';
import { endpoint, ip, servicePort, snapshot } from '../src/model/synthetic.ts';
import type { EndpointSpec, ServicePortSpec, ServiceSnapshot } from '../src/model/service-snapshot.ts';
import { seededRandom as random } from './helpers/random.ts';

/** Everything a port resolves to, with endpoint ranges and Maglev tables read out. */
function describe(t: ServiceTable, s: ServiceSnapshot): unknown {
  const list = (start: number, count: number) => Array.from({ length: count }, (_, k) => [t.endpointIP[start + k], t.endpointPort[start + k], t.endpointLocal[start + k]]);
  const maglev = (offset: number, size: number) => (offset < 0 ? null : Array.from(t.maglev.subarray(offset, offset + size)));
  const ports = Array.from({ length: t.count }, (_, i) => {
    const p = t.ports[i]!;
    const frontends = [t.frontend(p.clusterIP, p.protocol, p.port), ...p.externalIPs.map((a) => t.frontend(a, p.protocol, p.port)),
      ...p.loadBalancerIPs.map((a) => t.frontend(a, p.protocol, p.port)), p.nodePort === 0 ? -2 : t.frontend(NODE_PORT_ADDR, p.protocol, p.nodePort)];
    return {
      key: p.key, protocol: t.protocol[i], flags: t.flags[i], affinity: t.affinityTimeout[i],
      cluster: list(t.clusterStart[i]!, t.clusterCount[i]!), external: list(t.externalStart[i]!, t.externalCount[i]!),
      sharedLists: t.clusterStart[i] === t.externalStart[i] && t.clusterCount[i] === t.externalCount[i],
      clusterMaglev: maglev(t.clusterMaglev[i]!, t.clusterMaglevSize[i]!), externalMaglev: maglev(t.externalMaglev[i]!, t.externalMaglevSize[i]!),
      ranges: Array.from({ length: t.rangeCount[i]! }, (_, k) => [t.rangeNet[t.rangeStart[i]! + k], t.rangeMask[t.rangeStart[i]! + k]]),
      frontends, clusterIP: t.clusterIPs.get(p.clusterIP), frontendIP: t.frontendIPs.get(p.clusterIP), byKey: t.byKey.get(p.key),
    };
  });
  return { generation: t.generation, count: t.count, ports, problems: t.problems, byKey: t.byKey.size, nodePorts: s.nodePortAddresses.map((a) => t.nodePortAddresses.get(a)) };
}


function initial(next: () => number, n: number): ServiceSnapshot {
  const ports: ServicePortSpec[] = [];
  for (let i = 0; i < n; i++) {
    const eps: EndpointSpec[] = Array.from({ length: Math.floor(next() * 5) }, (_, k) => endpoint(ip('10.244.0.0') + i * 16 + k + 1, 8080, { local: next() < 0.3 }));
    ports.push(servicePort({
      name: `svc-${i}`, protocol: next() < 0.2 ? 17 : 6, clusterIP: ip('10.96.1.0') + i, port: 80, nodePort: next() < 0.3 ? 30000 + i : 0,
      externalIPs: next() < 0.1 ? [ip('198.51.100.1') + i] : [], lb: next() < 0.4 ? 'maglev' : 'random', externalLocal: next() < 0.2,
      affinityTimeoutSeconds: next() < 0.1 ? 10800 : 0, allEndpoints: eps,
    }));
  }
  return snapshot(ports, ['192.168.1.10']);
}

/** One change to one port, as the control side hands it: a new object for that port, the same objects for the rest. */
function change(next: () => number, p: ServicePortSpec, generation: number): ServicePortSpec {
  const eps = [...p.allEndpoints];
  const r = next();
  const fresh = () => endpoint(ip('10.245.0.0') + Math.floor(next() * 65000), 8080 + Math.floor(next() * 2), { local: next() < 0.3 });
  let over: Parameters<typeof servicePort>[0] = {};
  if (r < 0.3) eps.push(fresh());
  else if (r < 0.55 && eps.length > 0) eps.splice(Math.floor(next() * eps.length), 1);
  else if (r < 0.7 && eps.length > 0) eps[Math.floor(next() * eps.length)] = fresh();
  else if (r < 0.75) eps.length = 0;
  else if (r < 0.8) over = { lb: p.lb === 'maglev' ? 'random' : 'maglev' };
  else if (r < 0.85) over = { externalLocal: !p.externalLocal, internalLocal: next() < 0.3 };
  else if (r < 0.88) over = { affinityTimeoutSeconds: p.affinityTimeoutSeconds === 0 ? 60 + generation : 0 };
  else if (r < 0.92) eps.forEach((e, k) => { eps[k] = { ...e, ready: next() < 0.7 }; });
  else if (r < 0.95) over = { nodePort: p.nodePort === 0 ? 31000 + generation % 1000 : 0 }; // a frontend: whole build
  else if (r < 0.97) over = { externalIPs: [ip('203.0.113.1') + generation % 200] }; // a frontend: whole build
  else over = { port: p.port === 80 ? 8080 : 80 }; // a frontend: whole build
  return servicePort({
    namespace: p.namespace, name: p.name, portName: p.portName, protocol: p.protocol, clusterIP: p.clusterIP, port: p.port, nodePort: p.nodePort,
    externalIPs: p.externalIPs, loadBalancerIPs: p.loadBalancerIPs, lb: p.lb, externalLocal: p.externalLocal, internalLocal: p.internalLocal,
    affinityTimeoutSeconds: p.affinityTimeoutSeconds, allEndpoints: eps, ...over,
  });
}

test('random change sequences: every incremental update answers as the whole build of the same snapshot', () => {
  let incremental = 0;
  let whole = 0;
  for (let seed = 1; seed <= 6; seed++) {
    const next = random(seed);
    let snap = initial(next, 40 + seed * 10);
    let table = buildServiceTable(snap);
    for (let step = 0; step < 150; step++) {
      const ports = [...snap.ports];
      const changes = next() < 0.8 ? 1 : 1 + Math.floor(next() * 4);
      for (let c = 0; c < changes; c++) {
        const i = Math.floor(next() * ports.length);
        ports[i] = change(next, ports[i]!, step);
      }
      // Now and then a port is added (another count: whole build).
      if (next() < 0.02) ports.push(servicePort({ name: `late-${seed}-${step}`, clusterIP: ip('10.96.200.0') + step, allEndpoints: [endpoint('10.244.200.1', 80)] }));
      snap = { generation: snap.generation + 1, ports, nodePortAddresses: snap.nodePortAddresses };
      const updated = updateServiceTable(table, snap);
      const reference = buildServiceTable(snap);
      assert.deepStrictEqual(describe(updated, snap), describe(reference, snap), `seed ${seed} step ${step}`);
      assert.equal(reference.incremental, false);
      if (updated.incremental) incremental++;
      else whole++;
      // Garbage never outgrows the live arrays by more than the compaction rule allows.
      assert.ok(updated.garbage * 2 <= updated.endpointIP.length + updated.maglevUsed + 64, `seed ${seed} step ${step}: garbage ${updated.garbage}`);
      table = updated;
    }
  }
  // Both paths were exercised: most steps incremental, some whole (frontend changes, compaction).
  assert.ok(incremental > 500, `${incremental} incremental updates`);
  assert.ok(whole > 30, `${whole} whole builds`);
});

test('an update never writes to the previous table (the datapath may still read it)', () => {
  const next = random(99);
  const snap = initial(next, 64);
  const table = buildServiceTable(snap);
  const before = describe(table, snap);
  const ports = [...snap.ports];
  ports[5] = change(next, ports[5]!, 1);
  ports[9] = servicePort({ ...ports[9]!, clusterIP: ports[9]!.clusterIP, externalIPs: ports[9]!.externalIPs, loadBalancerIPs: ports[9]!.loadBalancerIPs, allEndpoints: [endpoint('10.246.0.1', 9090)], loadBalancerSourceRanges: [] });
  const updated = updateServiceTable(table, { generation: 2, ports, nodePortAddresses: snap.nodePortAddresses });
  assert.equal(updated.incremental, true);
  assert.deepStrictEqual(describe(table, snap), before);
  assert.notEqual(updated.endpointIP, table.endpointIP);
  assert.equal(updated.frontends, table.frontends, 'frontends shared, unchanged');
});

test('Maglev slots: a chain of updates appends to one array, and no table, earlier or sibling, sees another\'s writes', () => {
  const next = random(7);
  let snap = initial(next, 60);
  // Every port on Maglev, so that each change adds lookup tables.
  snap = { ...snap, ports: snap.ports.map((p) => servicePort({ ...p, clusterIP: p.clusterIP, externalIPs: p.externalIPs, loadBalancerIPs: p.loadBalancerIPs, allEndpoints: [...p.allEndpoints, endpoint(ip('10.247.0.1') + p.port, 80)], loadBalancerSourceRanges: [], lb: 'maglev' })) };
  const step = (from: ServiceSnapshot, g: number): ServiceSnapshot => {
    const ports = [...from.ports];
    const i = Math.floor(next() * ports.length);
    ports[i] = servicePort({ ...ports[i]!, clusterIP: ports[i]!.clusterIP, externalIPs: ports[i]!.externalIPs, loadBalancerIPs: ports[i]!.loadBalancerIPs, allEndpoints: [...ports[i]!.allEndpoints, endpoint(ip('10.248.0.0') + g, 80)], loadBalancerSourceRanges: [] });
    return { generation: g, ports, nodePortAddresses: from.nodePortAddresses };
  };
  const chain: [ServiceTable, ServiceSnapshot, unknown][] = [];
  let table = buildServiceTable(snap);
  chain.push([table, snap, describe(table, snap)]);
  for (let g = 2; g < 40; g++) {
    snap = step(snap, g);
    table = updateServiceTable(table, snap);
    assert.equal(table.incremental, true, `step ${g}`);
    assert.deepStrictEqual(describe(table, snap), describe(buildServiceTable(snap), snap), `step ${g}`);
    chain.push([table, snap, describe(table, snap)]);
  }
  // After the first update (the whole build's array has no room), each appends to its predecessor's array.
  const shared = chain.slice(2).filter(([t], k) => t.maglev === chain[k + 1]![0].maglev).length;
  assert.ok(shared >= chain.length - 4, `${shared} of ${chain.length - 2} updates appended in place`);
  // A sibling: another update of a table that already has a successor must not write over the successor's slots.
  const [parent, parentSnap] = chain[20]!;
  const siblingSnap = step(parentSnap, 100);
  const sibling = updateServiceTable(parent, siblingSnap);
  assert.notEqual(sibling.maglev, parent.maglev, 'a sibling copies');
  assert.deepStrictEqual(describe(sibling, siblingSnap), describe(buildServiceTable(siblingSnap), siblingSnap));
  for (const [t, s, described] of chain) assert.deepStrictEqual(describe(t, s), described, `table of generation ${s.generation} unchanged`);
});

test('whole build when the frontends, the node port addresses or the order change, or the previous build had problems', () => {
  const a = servicePort({ name: 'a', clusterIP: '10.96.0.1', allEndpoints: [endpoint('10.244.1.1', 80)] });
  const b = servicePort({ name: 'b', clusterIP: '10.96.0.2', allEndpoints: [endpoint('10.244.1.2', 80)] });
  const many = Array.from({ length: 16 }, (_, i) => servicePort({ name: `s${i}`, clusterIP: ip('10.96.1.0') + i, allEndpoints: [endpoint('10.244.2.1', 80)] }));
  const base = buildServiceTable(snapshot([a, b, ...many], ['192.168.1.10']));
  const moved = servicePort({ name: 'a', clusterIP: '10.96.0.1', allEndpoints: [endpoint('10.244.1.9', 80)] });
  assert.equal(updateServiceTable(base, snapshot([moved, b, ...many], ['192.168.1.10'])).incremental, true);
  assert.equal(updateServiceTable(base, snapshot([moved, b, ...many], ['192.168.1.11'])).incremental, false, 'node port addresses');
  assert.equal(updateServiceTable(base, snapshot([b, a, ...many], ['192.168.1.10'])).incremental, false, 'order');
  const newIP = servicePort({ name: 'a', clusterIP: '10.96.0.9', allEndpoints: [endpoint('10.244.1.1', 80)] });
  assert.equal(updateServiceTable(base, snapshot([newIP, b, ...many], ['192.168.1.10'])).incremental, false, 'cluster IP');
  const clash = buildServiceTable(snapshot([a, servicePort({ name: 'c', clusterIP: '10.96.0.1', allEndpoints: [] }), ...many]));
  assert.ok(clash.problems.length > 0);
  assert.equal(updateServiceTable(clash, snapshot([moved, clash.ports[1]!, ...many])).incremental, false, 'problems');
});

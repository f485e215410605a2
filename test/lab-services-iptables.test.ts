// Services in the lab with the kernel dataplane and kube-proxy's iptables mode (rules
// the lab's node daemons generate from the compiled ServiceSnapshot): the shared suite
// in test/helpers/lab-services.ts, plus a look at the installed rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { conntrackSuite, downSuite, serviceSuite } from './helpers/lab-services.ts';
import { tapir } from './helpers/lab.ts';

const lab = serviceSuite('lsi', ['--dataplane', 'kernel', '--proxy-mode', 'iptables']);

test('node namespaces hold kube-proxy iptables chains for the demo services', () => {
  const r = tapir(['lab', 'exec', '--name', lab.name, 'node-2', '--', 'iptables-save', '-t', 'nat']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /-A KUBE-SERVICES -d 10\.96\.0\.100\/32 -p tcp -m comment --comment "default\/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-/);
  assert.match(r.stdout, /-A KUBE-NODEPORTS -p tcp -m comment --comment "default\/web-nodeport:http" -m tcp --dport 30080 -j KUBE-EXT-/);
  assert.match(r.stdout, /-m recent --rcheck --seconds 600 --reap --name KUBE-SEP-/);
});

conntrackSuite(lab);
downSuite(lab);

// Services in the lab with the kernel dataplane and kube-proxy's nftables mode (rules
// the lab's node daemons generate from the compiled ServiceSnapshot): the shared suite
// in test/helpers/lab-services.ts, plus a look at the installed rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { conntrackSuite, downSuite, serviceSuite } from './helpers/lab-services.ts';
import { tapir } from './helpers/lab.ts';

const lab = serviceSuite('lsn', ['--dataplane', 'kernel', '--proxy-mode', 'nftables']);

test('node namespaces hold kube-proxy nftables maps and chains for the demo services', () => {
  const r = tapir(['lab', 'exec', '--name', lab.name, 'node-2', '--', 'nft', 'list', 'table', 'ip', 'kube-proxy']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /10\.96\.0\.100 \. tcp \. 80 : goto service-\w+-default\/web\/tcp\/http/);
  assert.match(r.stdout, /tcp \. 30080 : goto external-\w+-default\/web-nodeport\/tcp\/http/);
  assert.match(r.stdout, /numgen random mod 4 vmap/);
  assert.equal(tapir(['lab', 'exec', '--name', lab.name, 'node-2', '--', 'iptables-save', '-t', 'nat']).stdout.includes('KUBE-SVC-'), false, 'no iptables rules in nftables mode');
});

conntrackSuite(lab);
downSuite(lab);

// The CNI network configuration (src/cni/config.ts) on the shared field reader: every
// problem with its field path in one CniError, the spec's codes kept on `cniCode`, and
// keys of others (the runtime's, a chain's, a delegated IPAM plugin's) left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNetConf } from '../src/cni/config.ts';
import { CniCode, CniError } from '../src/cni/errors.ts';
import { TapirError } from '../src/errors/tapir-error.ts';

const base = { cniVersion: '1.1.0', name: 'tapir', type: 'tapir-cni' };

function cniError(conf: unknown, command = 'ADD'): CniError {
  try {
    parseNetConf(JSON.stringify(conf), command);
  } catch (err) {
    assert.ok(err instanceof CniError, String(err));
    assert.ok(err instanceof TapirError);
    assert.equal(err.code, 'TAPIR_CNI');
    return err;
  }
  assert.fail('expected a CniError');
}

test('a config with several problems reports all of them, each with its path (code 7)', () => {
  const e = cniError({
    cniVersion: '1.1.0', name: '-bad', controlSocket: 'agent.sock', agentTimeoutMs: 0, dns: [],
    ipam: { type: 'tapir-ipam', subnet: '10.244.1.0/31', gateway: '10.244.1.300', routes: [{ gw: '10.0.0.1' }, { dst: 'x' }] },
  });
  assert.equal(e.cniCode, CniCode.invalidConfig);
  assert.deepEqual(e.details.split('; '), [
    'name: "-bad" must start with a letter or digit followed by letters, digits, \'_\', \'.\' or \'-\'',
    'type: required field is missing',
    'controlSocket: "agent.sock" must be an absolute path',
    'agentTimeoutMs: 0 is out of range 1-600000',
    'ipam.subnet: 10.244.1.0/31 leaves no room for a gateway and pods (use /30 or shorter)',
    'ipam.routes[0].dst: required field is missing',
    'ipam.routes[1].dst: "x" is not an IPv4 prefix such as "10.244.1.0/24"',
    'ipam.gateway: "10.244.1.300" is not a valid IPv4 address',
    'dns: must be an object, not a list',
  ]);
  assert.equal(e.message, 'invalid network configuration: name: "-bad" must start with a letter or digit followed by letters, digits, \'_\', \'.\' or \'-\' (and 8 more problem(s))');
});

test('unknown tapir-ipam fields are code 2, every one named with its value', () => {
  const e = cniError({ ...base, ipam: { type: 'tapir-ipam', subnett: 'x', ranges: [] } });
  assert.equal(e.cniCode, CniCode.unsupportedField);
  assert.equal(e.message, 'unsupported field in network configuration: ipam.subnett="x", ipam.ranges=[]');
});

test('keys of the runtime, of a chain and of a delegated IPAM plugin are not problems', () => {
  const conf = parseNetConf(JSON.stringify({
    ...base, runtimeConfig: { portMappings: [] }, args: { cni: { ips: ['10.244.1.9'] } }, capabilities: { portMappings: true },
    ipMasq: false, somePluginOption: 1, ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]] },
  }), 'ADD');
  assert.deepEqual(conf.ipam, { type: 'host-local' });
  assert.equal((conf.raw.ipam as { ranges: unknown[] }).ranges.length, 1, 'the raw object goes to the delegate whole');
});

test('GC: the valid attachments each need containerID and ifname; absent or null is the empty list (as libcni 1.2.3 sends it)', () => {
  assert.deepEqual([...parseNetConf(JSON.stringify(base), 'GC').validAttachments!], []);
  assert.deepEqual([...parseNetConf(JSON.stringify({ ...base, 'cni.dev/valid-attachments': null }), 'GC').validAttachments!], []);
  const e = cniError({ ...base, 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }, { containerID: 'b' }, 'c'] }, 'GC');
  assert.deepEqual(e.details.split('; '), [
    'cni.dev/valid-attachments[1].ifname: required field is missing',
    'cni.dev/valid-attachments[2]: must be a mapping, not the string "c"',
  ]);
  const ok = parseNetConf(JSON.stringify({ ...base, 'cni.dev/attachments': [{ containerID: 'a', ifname: 'eth0' }] }), 'GC');
  assert.deepEqual([...ok.validAttachments!], ['a/eth0']);
});

test('version problems come first and alone (code 1); bad JSON is code 6', () => {
  assert.equal(cniError({ ...base, cniVersion: '0.2.0', type: undefined }).cniCode, CniCode.incompatibleVersion);
  assert.throws(() => parseNetConf('[', 'ADD'), (e: unknown) => e instanceof CniError && e.cniCode === CniCode.decode);
});

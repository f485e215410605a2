// The CNI network configuration (src/cni/config.ts) on the shared field reader: every
// problem with its field path in one CniError, the spec's codes kept on `cniCode`, and
// keys of others (the runtime's, a chain's, a delegated IPAM plugin's) left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNetConf, type TapirIpamConfig } from '../src/cni/config.ts';
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
    'ipam.gateway: "10.244.1.300" is not an IPv4 address',
    'ipam.routes[0].dst: required field is missing',
    'ipam.routes[1].dst: "x" is not an IPv4 or IPv6 prefix such as "10.244.1.0/24" or "fd00:10:244:1::/64"',
    'dns: must be an object, not a list',
  ]);
  assert.equal(e.message, 'invalid network configuration: name: "-bad" must start with a letter or digit followed by letters, digits, \'_\', \'.\' or \'-\' (and 8 more problem(s))');
});

test('unknown tapir-ipam fields are code 2, every one named with its value', () => {
  const e = cniError({ ...base, ipam: { type: 'tapir-ipam', subnett: 'x', rangez: [] } });
  assert.equal(e.cniCode, CniCode.unsupportedField);
  assert.equal(e.message, 'unsupported field in network configuration: ipam.subnett="x", ipam.rangez=[]');
  const inRange = cniError({ ...base, ipam: { type: 'tapir-ipam', ranges: [[{ subnet: '10.244.1.0/24', exclude: ['10.244.1.9'] }]] } });
  assert.equal(inRange.cniCode, CniCode.unsupportedField);
  assert.equal(inRange.message, 'unsupported field in network configuration: ipam.ranges[0][0].exclude=["10.244.1.9"]');
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

test('ipam.ranges, host-local style: one IPv4 and one IPv6 range set, or IPv6 alone; the single subnet form still reads', () => {
  const dual = parseNetConf(JSON.stringify({
    ...base,
    ipam: {
      type: 'tapir-ipam',
      ranges: [[{ subnet: '10.244.1.0/24', gateway: '10.244.1.1', rangeStart: '10.244.1.10' }], [{ subnet: 'fd00:10:244:1::/64', rangeEnd: 'fd00:10:244:1::ffff' }]],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }, { dst: 'fd00:99::/64', gw: 'fd00:10:244:1::1' }],
    },
  }), 'ADD').ipam as TapirIpamConfig;
  assert.deepEqual(dual.ranges.map((r) => [r.family, String(r.subnet), r.gateway, r.rangeStart, r.rangeEnd, r.set, r.path]), [
    [4, '10.244.1.0/24', '10.244.1.1', '10.244.1.10', null, 0, 'ipam.ranges[0][0]'],
    [6, 'fd00:10:244:1::/64', null, null, 'fd00:10:244:1::ffff', 1, 'ipam.ranges[1][0]'],
  ]);
  assert.deepEqual(dual.routes, [{ dst: '0.0.0.0/0' }, { dst: '::/0' }, { dst: 'fd00:99::/64', gw: 'fd00:10:244:1::1' }]);
  const v6only = parseNetConf(JSON.stringify({ ...base, ipam: { type: 'tapir-ipam', ranges: [[{ subnet: 'fd00:10:244:1::/64' }]] } }), 'ADD').ipam as TapirIpamConfig;
  assert.deepEqual(v6only.ranges.map((r) => [r.family, r.set]), [[6, 0]]);
  const single = parseNetConf(JSON.stringify({ ...base, ipam: { type: 'tapir-ipam', subnet: '10.244.1.0/24', rangeEnd: '10.244.1.50' } }), 'ADD').ipam as TapirIpamConfig;
  assert.deepEqual(single.ranges.map((r) => [r.family, String(r.subnet), r.rangeEnd, r.path]), [[4, '10.244.1.0/24', '10.244.1.50', 'ipam']]);
  const agents = parseNetConf(JSON.stringify({ ...base, ipam: { type: 'tapir-ipam' } }), 'ADD').ipam as TapirIpamConfig;
  assert.deepEqual(agents.ranges, [], 'no subnet: the agent\'s pod ranges');
});

test('ipam.ranges problems name the field: two sets of a family, two ranges in a set, a gateway of the other family, both forms at once', () => {
  const e = cniError({
    ...base,
    ipam: {
      type: 'tapir-ipam',
      ranges: [
        [{ subnet: '10.244.1.0/24', gateway: 'fd00::1' }],
        [{ subnet: '10.245.1.0/24' }],
        [{ subnet: 'fd00:10:244:1::/64' }, { subnet: 'fd00:10:244:2::/64' }],
        [],
        [{ subnet: 'fd00:10:244:1::1/127' }],
        [{ rangeStart: '10.244.1.5' }],
        'x',
      ],
      routes: [{ dst: '::/0', gw: '10.244.1.1' }],
    },
  });
  assert.equal(e.cniCode, CniCode.invalidConfig);
  assert.deepEqual(e.details.split('; '), [
    'ipam.ranges[0][0].gateway: "fd00::1" is an IPv6 address, but the range is IPv4',
    'ipam.ranges[1]: a second IPv4 range set (the first is ipam.ranges[0][0]): tapir-ipam gives a pod one address per family',
    'ipam.ranges[2][1]: tapir-ipam takes one range per set, as it gives one address per family (narrow the one range with rangeStart and rangeEnd)',
    'ipam.ranges[3]: must hold a range',
    'ipam.ranges[4][0].subnet: fd00:10:244:1::/127 leaves no room for a gateway and pods (use /126 or shorter)',
    'ipam.ranges[4]: a second IPv6 range set (the first is ipam.ranges[2][0]): tapir-ipam gives a pod one address per family',
    'ipam.ranges[5][0].subnet: required field is missing',
    'ipam.ranges[6]: must be a list of ranges (a range set), not the string "x"',
    'ipam.routes[0].gw: "10.244.1.1" is an IPv4 address, but the range is IPv6',
  ]);
  const both = cniError({ ...base, ipam: { type: 'tapir-ipam', subnet: '10.244.1.0/24', ranges: [[{ subnet: '10.244.1.0/24' }]] } });
  assert.deepEqual(both.details.split('; '), ['ipam.subnet: give either ipam.ranges or the single-range fields (subnet, gateway, rangeStart, rangeEnd), not both']);
  assert.deepEqual(cniError({ ...base, ipam: { type: 'tapir-ipam', ranges: [] } }).details.split('; '),
    ['ipam.ranges: must not be empty: give one range set per address family, such as [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]']);
});

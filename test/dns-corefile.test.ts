// The Corefile reader: kubeadm's default Corefile keeps its meaning; every unsupported
// plugin or option is an error naming its file and line, all of them at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorefileError, kubeadmCorefile, parseCorefile, readCorefile } from '../src/dns/corefile.ts';
import { matchZone } from '../src/dns/corefile-config.ts';
import { COMMON_LOG_FORMAT } from '../src/dns/corefile-plugins.ts';

/** kubeadm's Corefile (cmd/kubeadm/app/phases/addons/dns/manifests.go, CoreDNSConfigMap) rendered for cluster.local. */
export const KUBEADM_COREFILE = `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
`;

/** Older kubeadm releases (before the cache's disable lines). */
const KUBEADM_COREFILE_OLD = KUBEADM_COREFILE.replace(/cache 30 \{[^}]*\}/, 'cache 30');

const resolv = (path: string): string[] => {
  assert.equal(path, '/etc/resolv.conf');
  return ['10.0.0.2', '10.0.0.3'];
};

test('kubeadm\'s Corefile: every plugin with its meaning, in CoreDNS\'s execution order', () => {
  const c = parseCorefile(KUBEADM_COREFILE, 'Corefile', {}, resolv);
  assert.equal(c.servers.length, 1);
  const s = c.servers[0]!;
  assert.deepEqual(s.zones, ['']);
  assert.equal(s.port, 53);
  assert.deepEqual(s.plugins, ['reload', 'ready', 'health', 'prometheus', 'errors', 'loadbalance', 'cache', 'kubernetes', 'loop', 'forward']);
  assert.equal(s.errors, true);
  assert.deepEqual(s.health, { address: { host: '', port: 8080 }, lameduckMs: 5000 });
  assert.deepEqual(s.ready, { address: { host: '', port: 8181 } });
  assert.deepEqual(s.prometheus, { address: { host: '', port: 9153 } });
  assert.deepEqual(s.kubernetes, {
    zones: ['cluster.local', 'in-addr.arpa', 'ip6.arpa'], ttl: 30, pods: 'insecure', fallthrough: ['in-addr.arpa', 'ip6.arpa'],
    endpointPodNames: false, namespaces: [],
  });
  assert.deepEqual(s.forward?.upstreams, [{ address: '10.0.0.2', port: 53 }, { address: '10.0.0.3', port: 53 }]);
  assert.equal(s.forward?.from, '');
  assert.equal(s.forward?.maxConcurrent, 1000);
  assert.equal(s.forward?.policy, 'random');
  assert.equal(s.forward?.healthCheckMs, 500);
  assert.deepEqual(s.cache, {
    zones: [''], success: { capacity: 9984, maxTtl: 30, minTtl: 5 }, denial: { capacity: 9984, maxTtl: 30, minTtl: 5 },
    disableSuccess: ['cluster.local'], disableDenial: ['cluster.local'],
  });
  assert.equal(s.loop, true);
  assert.deepEqual(s.reload, { intervalMs: 30_000, jitterMs: 15_000 });
  assert.equal(s.loadbalance, true);
  assert.equal(s.log, null);
  assert.deepEqual(s.bind, []);

  // The built-in copy is the same text.
  assert.equal(kubeadmCorefile(), KUBEADM_COREFILE);
  assert.match(kubeadmCorefile('example.org'), /kubernetes example\.org in-addr\.arpa ip6\.arpa \{[^]*disable denial example\.org/);

  const old = parseCorefile(KUBEADM_COREFILE_OLD, 'Corefile', {}, resolv).servers[0]!;
  assert.deepEqual(old.cache?.disableSuccess, []);
  assert.equal(old.cache?.success.maxTtl, 30);
});

test('the real /etc/resolv.conf of this machine is read for forward', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tdns-corefile-'));
  try {
    writeFileSync(join(dir, 'resolv.conf'), '# comment\nsearch example.test\nnameserver 192.0.2.53\nnameserver 2001:db8::53 ; v6\noptions ndots:5\n');
    writeFileSync(join(dir, 'Corefile'), `. {\n  forward . ${join(dir, 'resolv.conf')} 192.0.2.1:5353 dns://[2001:db8::1]:54\n}\n`);
    const s = readCorefile(join(dir, 'Corefile')).servers[0]!;
    assert.deepEqual(s.forward?.upstreams, [
      { address: '192.0.2.53', port: 53 }, { address: '2001:db8::53', port: 53 }, { address: '192.0.2.1', port: 5353 }, { address: '2001:db8::1', port: 54 },
    ]);
    assert.throws(() => readCorefile(join(dir, 'missing')), (err: unknown) => err instanceof CorefileError && /missing: cannot read the Corefile/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unsupported plugin is an error naming its file and line; every problem at once', () => {
  const text = `# a cluster's ConfigMap
.:53 {
    errors
    health
    kubernetes cluster.local {
       pods verified
       noendpoints
    }
    rewrite name foo.example.com bar.example.com
    cache 30 {
       prefetch 10
       serve_stale
    }
    forward . 10.0.0.2 tls://1.1.1.1 {
       tls_servername cloudflare-dns.com
    }
    frobnicate
    log . "{remote} {bogus}"
}
`;
  assert.throws(() => parseCorefile(text, '/etc/coredns/Corefile', {}), (err: unknown) => {
    assert.ok(err instanceof CorefileError);
    assert.equal(err.code, 'DNS_COREFILE');
    assert.deepEqual(err.problems, [
      '/etc/coredns/Corefile:6: plugin "kubernetes": "pods verified" is not supported by Tapir (use "pods insecure" or "pods disabled")',
      '/etc/coredns/Corefile:7: option "noendpoints" of plugin "kubernetes" is not supported by Tapir',
      '/etc/coredns/Corefile:9: plugin "rewrite" is not supported by Tapir',
      '/etc/coredns/Corefile:11: option "prefetch" of plugin "cache" is not supported by Tapir',
      '/etc/coredns/Corefile:12: option "serve_stale" of plugin "cache" is not supported by Tapir',
      '/etc/coredns/Corefile:14: plugin "forward": "tls://1.1.1.1": only plain DNS upstreams are supported by Tapir (no tls:// or https://)',
      '/etc/coredns/Corefile:15: option "tls_servername" of plugin "forward" is not supported by Tapir',
      '/etc/coredns/Corefile:17: unknown plugin "frobnicate" (not a CoreDNS plugin)',
      '/etc/coredns/Corefile:18: plugin "log": placeholder {bogus} is not supported by Tapir (supported: {remote} {port} {type} {class} {name} {proto} {size} {rcode} {rsize} {duration} {>id} {>do} {>bufsize} {>rflags} {>opcode})',
    ]);
    // The first line is the message's first line (what `tapir` prints with the code).
    assert.match(err.message, /^\/etc\/coredns\/Corefile:6: /);
    return true;
  });
  // The example of the issue.
  assert.throws(() => parseCorefile('.:53 {\n  errors\n  health\n  ready\n  cache\n  loop\n  rewrite name a b\n}\n'),
    (err: unknown) => err instanceof CorefileError && err.message === 'Corefile:7: plugin "rewrite" is not supported by Tapir');
});

test('syntax: several blocks and ports, dns://, quotes, comments, env, option blocks, CIDR zones', () => {
  const text = `
dns://example.test:1053 {   # trailing comment
  bind 127.0.0.1 {$BIND_ADDR}
  forward . 192.0.2.1 {
    except internal.example.test
    force_tcp
    policy sequential
    health_check 1s
    max_fails 3
    expire 20s
  }
}
cluster.local:53 10.96.0.0/16 {
  kubernetes {
    ttl 5
    fallthrough
    namespaces default kube-system
    kubeconfig /nowhere context
  }
  log cluster.local "{type} {name} {rcode}" {
    class denial error
  }
  prometheus 127.0.0.1:9253
  reload 10s 2s
}
. {
  log
  forward . "{$UPSTREAM:192.0.2.9}"
  cache {
    success 100 60 1
    denial 50
  }
  loadbalance round_robin
}
`;
  const c = parseCorefile(text, 'Corefile', { BIND_ADDR: '::1' });
  assert.equal(c.servers.length, 3);
  const [a, b, root] = c.servers as [typeof c.servers[0], typeof c.servers[0], typeof c.servers[0]];
  assert.deepEqual([a.zones, a.port, a.line], [['example.test'], 1053, 2]);
  assert.deepEqual(a.bind, ['127.0.0.1', '::1']);
  assert.deepEqual(a.forward, {
    from: '', upstreams: [{ address: '192.0.2.1', port: 53 }], except: ['internal.example.test'], forceTcp: true, preferUdp: false,
    policy: 'sequential', healthCheckMs: 1000, maxFails: 3, expireMs: 20_000, maxConcurrent: 0,
  });
  assert.deepEqual(b.zones, ['cluster.local', '96.10.in-addr.arpa']);
  assert.deepEqual(b.kubernetes, { zones: ['cluster.local', '96.10.in-addr.arpa'], ttl: 5, pods: 'disabled', fallthrough: [], endpointPodNames: false, namespaces: ['default', 'kube-system'] });
  assert.deepEqual(b.log, { names: ['cluster.local'], format: '{type} {name} {rcode}', classes: ['denial', 'error'] });
  assert.deepEqual(b.prometheus, { address: { host: '127.0.0.1', port: 9253 } });
  assert.deepEqual(b.reload, { intervalMs: 10_000, jitterMs: 2000 });
  assert.deepEqual(b.plugins, ['reload', 'prometheus', 'log', 'kubernetes']);
  assert.deepEqual(root.zones, ['']);
  assert.deepEqual(root.log, { names: [''], format: COMMON_LOG_FORMAT, classes: ['all'] });
  assert.deepEqual(root.forward?.upstreams, [{ address: '192.0.2.9', port: 53 }]);
  assert.deepEqual(root.cache?.success, { capacity: 100, maxTtl: 60, minTtl: 1 });
  assert.deepEqual(root.cache?.denial, { capacity: 50, maxTtl: 1800, minTtl: 5 });
  assert.equal(root.loadbalance, true);
});

test('structural errors: unclosed blocks, duplicate zones and plugins, bad values', () => {
  const cases: [string, RegExp][] = [
    ['.:53 {\n  errors\n', /^Corefile:1: the server block is not closed with "}"$/m],
    ['.:53\n  errors\n', /needs a "\{ \.\.\. \}" body/],
    ['.:53 {\n}\n.:53 {\n}\n', /^Corefile:3: zone "\." on port 53 is defined twice \(also line 1\)$/m],
    ['. {\n  cache\n  cache 10\n}\n', /^Corefile:3: plugin "cache" appears twice in this server block \(also line 2\)$/m],
    ['. {\n  health {\n    lameduck soon\n  }\n}\n', /^Corefile:3: plugin "health": lameduck needs a duration such as "5s" or "500ms", got "soon"$/m],
    ['. {\n  kubernetes cluster.local {\n    ttl 99999\n  }\n}\n', /ttl must be a whole number from 0 to 3600, got "99999"/],
    ['.:99999 {\n}\n', /the port must be a number from 0 to 65535/],
    ['tls://.:853 {\n}\n', /only plain DNS \(dns:\/\/\) is supported by Tapir, not tls:\/\//],
    ['. {\n  forward .\n}\n', /plugin "forward" needs a zone and at least one upstream/],
    ['. {\n  forward . 192.0.2.1 {\n    force_tcp\n    prefer_udp\n  }\n}\n', /force_tcp and prefer_udp cannot both be set/],
    ['. {\n  bind eth0\n}\n', /"eth0" is not an IP address/],
    ['. {\n  forward . {$NOPE}\n}\n', /environment variable NOPE is not set/],
    ['. {\n  kubernetes {\n    endpoint_pod_names\n  }\n}\n', /^Corefile:3: option "endpoint_pod_names" of plugin "kubernetes" is not supported by Tapir$/m],
    ['. {\n  loadbalance weighted /etc/w\n}\n', /policy "weighted" is not supported by Tapir/],
    ['cluster.local {\n  kubernetes example.com\n}\n', /zone "example.com" is not inside the server block's zones/],
    ['', /no server block/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseCorefile(text, 'Corefile', {}), (err: unknown) => err instanceof CorefileError && re.test(err.message), text);
});

test('matchZone: the longest zone wins, label boundaries respected', () => {
  const zones = ['', 'cluster.local', 'svc.cluster.local', 'in-addr.arpa'];
  assert.equal(matchZone('web.default.svc.cluster.local', zones), 'svc.cluster.local');
  assert.equal(matchZone('cluster.local', zones), 'cluster.local');
  assert.equal(matchZone('xcluster.local', zones), '');
  assert.equal(matchZone('example.test', ['cluster.local']), undefined);
  assert.equal(matchZone('', ['']), '');
});

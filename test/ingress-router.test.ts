// The Ingress router: every matching rule of the ingress-controller-conformance suite as
// a table (host, path -> which rule or backend), canary choice, rewrite-target, SNI
// lookup, round robin, and that a request compiles no regular expression.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Backend, PathType } from '../src/ingress/model.ts';
import { normalizeHost, Router } from '../src/ingress/router.ts';
import { backend, config, options, rule, vhost } from './helpers/ingress-config.ts';

/** A backend per rule, named after it, so the table can say which rule took a request. */
function rules(list: [PathType, string][]): ReturnType<typeof rule>[] {
  return list.map(([type, path]) => rule(type, path, backend(`${type} ${path}`)));
}

/** The name of the backend that serves (host, path): a rule's, the default's, or '404'. */
function served(router: Router, host: string, path: string): string {
  const m = router.route(normalizeHost(host), path);
  return m.rule?.backend.name ?? m.defaultBackend?.name ?? '404';
}

const CASES: { name: string; paths: [PathType, string][]; requests: [string, string][] }[] = [
  {
    name: 'Exact is case-sensitive and whole: /foo matches neither /foo/ nor /FOO',
    paths: [['Exact', '/foo']],
    requests: [['/foo', 'Exact /foo'], ['/foo/', '404'], ['/FOO', '404'], ['/foo/bar', '404'], ['/fo', '404']],
  },
  {
    name: 'Prefix matches whole path elements: /foo takes /foo, /foo/ and /foo/bar, not /foobar or /FOO',
    paths: [['Prefix', '/foo']],
    requests: [['/foo', 'Prefix /foo'], ['/foo/', 'Prefix /foo'], ['/foo/bar', 'Prefix /foo'], ['/foobar', '404'], ['/FOO', '404'], ['/', '404']],
  },
  {
    name: 'Prefix /aaa/bbb: /aaa/bbb, /aaa/bbb/ and /aaa/bbb/ccc, not /aaa/bbbxyz or /aaa',
    paths: [['Prefix', '/aaa/bbb']],
    requests: [['/aaa/bbb', 'Prefix /aaa/bbb'], ['/aaa/bbb/', 'Prefix /aaa/bbb'], ['/aaa/bbb/ccc', 'Prefix /aaa/bbb'], ['/aaa/bbbxyz', '404'], ['/aaa', '404'], ['/aaaccc', '404']],
  },
  {
    name: 'a trailing slash in a Prefix rule is ignored: /aaa/bbb/ takes /aaa/bbb',
    paths: [['Prefix', '/aaa/bbb/']],
    requests: [['/aaa/bbb', 'Prefix /aaa/bbb/'], ['/aaa/bbb/', 'Prefix /aaa/bbb/'], ['/aaa/bbb/ccc', 'Prefix /aaa/bbb/'], ['/aaa/bbbxyz', '404']],
  },
  {
    name: 'Prefix / takes every path',
    paths: [['Prefix', '/']],
    requests: [['/', 'Prefix /'], ['/anything', 'Prefix /'], ['/a/b/c/', 'Prefix /']],
  },
  {
    name: 'the longest matching prefix wins, whatever the order of the rules',
    paths: [['Prefix', '/'], ['Prefix', '/foo'], ['Prefix', '/foo/bar']],
    requests: [['/foo/bar/baz', 'Prefix /foo/bar'], ['/foo/bar', 'Prefix /foo/bar'], ['/foo/baz', 'Prefix /foo'], ['/foo', 'Prefix /foo'], ['/other', 'Prefix /'], ['/foo/barn', 'Prefix /foo']],
  },
  {
    name: 'Exact beats Prefix on the same path, in either order',
    paths: [['Prefix', '/foo'], ['Exact', '/foo']],
    requests: [['/foo', 'Exact /foo'], ['/foo/', 'Prefix /foo'], ['/foo/x', 'Prefix /foo']],
  },
  {
    name: 'a longer Prefix beats a shorter Exact; a longer Exact beats a shorter Prefix',
    paths: [['Exact', '/foo'], ['Prefix', '/foo/bar'], ['Prefix', '/a'], ['Exact', '/a/b']],
    requests: [['/foo/bar', 'Prefix /foo/bar'], ['/foo', 'Exact /foo'], ['/a/b', 'Exact /a/b'], ['/a/b/c', 'Prefix /a'], ['/a', 'Prefix /a']],
  },
  {
    name: 'ImplementationSpecific is treated as Prefix',
    paths: [['ImplementationSpecific', '/impl']],
    requests: [['/impl', 'ImplementationSpecific /impl'], ['/impl/x', 'ImplementationSpecific /impl'], ['/implx', '404']],
  },
];

for (const c of CASES) {
  test(`path rules: ${c.name}`, () => {
    const router = new Router(config([vhost('foo.com', rules(c.paths))]));
    for (const [path, want] of c.requests) {
      assert.equal(served(router, 'foo.com', path), want, `${path} on ${c.paths.map((p) => p.join(' ')).join(', ')}`);
    }
  });
}

test('hosts: exact and case-insensitive, port and trailing dot stripped; *.foo.com matches exactly one label', () => {
  const b = (n: string): Backend => backend(n);
  const router = new Router(config([
    vhost('foo.com', [rule('Prefix', '/', b('foo.com'))]),
    vhost('*.foo.com', [rule('Prefix', '/', b('*.foo.com'))]),
    vhost('exact.foo.com', [rule('Prefix', '/', b('exact.foo.com'))]),
    vhost('*.bar.com', [rule('Prefix', '/', b('*.bar.com'))]),
  ]));
  const table: [string, string][] = [
    ['foo.com', 'foo.com'], ['FOO.com:8080', 'foo.com'], ['foo.com.', 'foo.com'],
    ['bar.foo.com', '*.foo.com'], ['BAR.foo.com:80', '*.foo.com'],
    ['baz.bar.foo.com', '404'], ['exact.foo.com', 'exact.foo.com'],
    ['bar.com', '404'], ['x.bar.com', '*.bar.com'], ['other.org', '404'], ['', '404'], ['[::1]:80', '404'],
  ];
  for (const [host, want] of table) assert.equal(served(router, host, '/'), want, host);
});

test('rules without a host serve every other host; a matched host without a matching path falls to the default backend, else 404', () => {
  const router = new Router(config([
    vhost('', [rule('Prefix', '/any', backend('any'))]),
    vhost('foo.com', [rule('Exact', '/foo', backend('foo'))]),
  ], { defaultBackend: backend('default/default-http-backend:80') }));
  assert.equal(served(router, 'other.org', '/any/x'), 'any');
  assert.equal(served(router, 'foo.com', '/foo'), 'foo');
  assert.equal(served(router, 'foo.com', '/any'), 'default/default-http-backend:80');
  assert.equal(served(router, 'other.org', '/nothing'), 'default/default-http-backend:80');
  const noDefault = new Router(config([vhost('foo.com', [rule('Exact', '/foo', backend('foo'))])]));
  const m = noDefault.route('foo.com', '/bar');
  assert.equal(m.rule, null);
  assert.equal(m.defaultBackend, null);
  assert.equal(served(noDefault, 'nohost', '/foo'), '404');
});

test('several Ingresses on one host: their rules keep compile order for equal paths', () => {
  const router = new Router(config([vhost('foo.com', [
    rule('Prefix', '/shared', backend('older'), { ingress: 'default/a' }),
    rule('Prefix', '/shared', backend('newer'), { ingress: 'default/b' }),
    rule('Prefix', '/b-only', backend('b'), { ingress: 'default/b' }),
  ])]));
  assert.equal(served(router, 'foo.com', '/shared/x'), 'older');
  assert.equal(router.route('foo.com', '/b-only').rule?.rule.ingress, 'default/b');
});

test('use-regex: anchored, case-insensitive; rewrite-target replaces the path with its capture groups and keeps the query', () => {
  const regexOpts = options({ useRegex: true, rewriteTarget: '/$2' });
  const router = new Router(config([vhost('foo.com', [
    rule('ImplementationSpecific', '/something(/|$)(.*)', backend('rewrite'), { options: regexOpts }),
    rule('Prefix', '/', backend('root')),
  ])]));
  const m = router.route('foo.com', '/something/new/path');
  assert.equal(m.rule?.backend.name, 'rewrite');
  assert.equal(m.rule!.upstreamPath('/something/new/path', '?a=1'), '/new/path?a=1');
  assert.equal(m.rule!.upstreamPath('/something', ''), '/');
  assert.equal(router.route('foo.com', '/SOMETHING/x').rule?.backend.name, 'rewrite');
  assert.equal(router.route('foo.com', '/x/something').rule?.backend.name, 'root');
  assert.equal(router.route('foo.com', '/').rule!.upstreamPath('/', '?q'), '/?q');
  // A rewrite with literal text around the groups.
  const r2 = new Router(config([vhost('', [rule('Prefix', '/api/v(\\d+)/(.*)', backend('api'), { options: options({ useRegex: true, rewriteTarget: '/version-$1/$2/end' }) })])]));
  assert.equal(r2.route('x', '/api/v2/users').rule!.upstreamPath('/api/v2/users', ''), '/version-2/users/end');
  // An invalid expression matches nothing instead of throwing.
  const bad = new Router(config([vhost('', [rule('Prefix', '/(unclosed', backend('bad'), { options: options({ useRegex: true }) })])]));
  assert.equal(served(bad, 'x', '/(unclosed'), '404');
});

test('canary: by header (always / never / a value) first, then by weight', () => {
  const main = backend('main'), canary = backend('canary');
  const byHeader = new Router(config([vhost('', [rule('Prefix', '/', main, { canary: { backend: canary, weight: 0, header: { name: 'X-Canary', value: null } } })])]));
  const r = byHeader.route('h', '/').rule!;
  assert.equal(r.choose(['X-Canary', 'always'], 0.99).name, 'canary');
  assert.equal(r.choose(['x-canary', 'never'], 0).name, 'main');
  assert.equal(r.choose(['x-canary', 'other'], 0).name, 'main');
  assert.equal(r.choose([], 0).name, 'main');

  const withValue = new Router(config([vhost('', [rule('Prefix', '/', main, { canary: { backend: canary, weight: 50, header: { name: 'x-version', value: 'v2' } } })])]));
  const v = withValue.route('h', '/').rule!;
  assert.equal(v.choose(['x-version', 'v2'], 0.99).name, 'canary');
  assert.equal(v.choose(['x-version', 'v1'], 0.99).name, 'main', 'another value falls to the weight (0.99 -> main)');
  assert.equal(v.choose(['x-version', 'v1'], 0.1).name, 'canary', 'another value falls to the weight (0.1 -> canary)');

  const byWeight = new Router(config([vhost('', [rule('Prefix', '/', main, { canary: { backend: canary, weight: 30, header: null } })])]));
  const w = byWeight.route('h', '/').rule!;
  let toCanary = 0;
  for (let i = 0; i < 1000; i++) if (w.choose([], i / 1000).name === 'canary') toCanary++;
  assert.equal(toCanary, 300);
  const none = new Router(config([vhost('', [rule('Prefix', '/', main, { canary: { backend: canary, weight: 0, header: null } })])])).route('h', '/').rule!;
  assert.equal(none.choose([], 0).name, 'main');
  const all = new Router(config([vhost('', [rule('Prefix', '/', main, { canary: { backend: canary, weight: 100, header: null } })])])).route('h', '/').rule!;
  assert.equal(all.choose([], 0.9999).name, 'canary');
});

test('SNI: a secret by exact name or one-label wildcard, from tls.hosts and from the hosts that name it', () => {
  const cert = (secret: string, hosts: string[]) => ({ secret, certPem: 'x', keyPem: 'y', hosts });
  const router = new Router(config([
    vhost('foo.com', [], 'default/foo-tls'),
    vhost('bar.com', [], 'default/missing'),
  ], { certificates: [cert('default/foo-tls', []), cert('default/wild', ['*.example.com']), cert('default/listed', ['Listed.org'])] }));
  assert.equal(router.secretForServerName('FOO.com'), 'default/foo-tls');
  assert.equal(router.secretForServerName('a.example.com'), 'default/wild');
  assert.equal(router.secretForServerName('a.b.example.com'), null);
  assert.equal(router.secretForServerName('example.com'), null);
  assert.equal(router.secretForServerName('listed.org'), 'default/listed');
  assert.equal(router.secretForServerName('bar.com'), null, 'a Secret that is not in certificates: the default certificate');
});

test('endpoints: round robin over all, skipping the ones tried and the ones marked down while others are left', () => {
  const router = new Router(config([vhost('', [rule('Prefix', '/', backend('svc', [{ ip: '10.0.0.1', port: 80 }, { ip: '10.0.0.2', port: 80 }, { ip: '10.0.0.3', port: 80 }]))])]));
  const b = router.route('h', '/').rule!.backend;
  const seen = Array.from({ length: 6 }, () => b.next([], 0));
  assert.deepEqual([...seen].sort(), [0, 0, 1, 1, 2, 2]);
  assert.notEqual(seen[0], seen[1]);
  const first = b.next([], 0);
  assert.notEqual(b.next([first], 0), first);
  b.downUntil[1] = 1000;
  for (let i = 0; i < 6; i++) assert.notEqual(b.next([], 500), 1);
  assert.equal(b.next([0, 2], 500), 1, 'a down endpoint is still used when it is the only one left');
  assert.equal(b.next([0, 1, 2], 500), -1);
  // The cookie value names an endpoint, the same in every config.
  const again = new Router(config([vhost('', [rule('Prefix', '/', backend('svc', [{ ip: '10.0.0.3', port: 80 }]))])])).route('h', '/').rule!.backend;
  assert.equal(b.endpointForCookie(again.cookieValues[0]!), 2);
  assert.equal(b.endpointForCookie('nonsense'), -1);
});

test('endpoints of either family: an IPv6 address in brackets (the upstream origin), an IPv4 one as it was; IPv6 literal hosts keep their brackets', () => {
  const router = new Router(config([vhost('', [rule('Prefix', '/', backend('svc', [{ ip: 'fd00:10:244:1::2', port: 8080 }, { ip: '10.244.1.2', port: 8080 }]))])]));
  const b = router.route('h', '/').rule!.backend;
  assert.deepEqual(b.addresses, ['[fd00:10:244:1::2]:8080', '10.244.1.2:8080']);
  assert.equal(new URL(`http://${b.addresses[0]}`).port, '8080', 'a valid origin');
  assert.notEqual(b.cookieValues[0], b.cookieValues[1]);
  assert.equal(normalizeHost('[FD00::1]:8443'), '[fd00::1]');
  assert.equal(normalizeHost('[fd00::1]'), '[fd00::1]');
});

test('routing a request compiles no regular expression (they are built with the router)', () => {
  const router = new Router(config([vhost('foo.com', [
    rule('Prefix', '/re/(.*)', backend('re'), { options: options({ useRegex: true, rewriteTarget: '/$1' }) }),
    rule('Exact', '/exact', backend('exact')),
    rule('Prefix', '/', backend('root')),
  ]), vhost('*.foo.com', [rule('Prefix', '/', backend('wild'))])]));
  const Original = globalThis.RegExp;
  let constructed = 0;
  globalThis.RegExp = new Proxy(Original, { construct(target, args) { constructed++; return Reflect.construct(target, args); } });
  try {
    for (let i = 0; i < 1000; i++) {
      const m = router.route(normalizeHost('FOO.com:80'), '/re/x');
      m.rule!.upstreamPath('/re/x', '?a');
      router.route('a.foo.com', '/exact');
      router.route('foo.com', '/exact');
    }
    assert.equal(constructed, 0);
    // The counter works: a new router compiles its expression.
    new Router(config([vhost('', [rule('Prefix', '/(x)', backend('b'), { options: options({ useRegex: true }) })])]));
    assert.ok(constructed > 0);
  } finally {
    globalThis.RegExp = Original;
  }
});

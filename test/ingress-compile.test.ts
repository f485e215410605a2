// The Ingress compile (src/ingress/compile.ts) as a table of cases: manifests in, the
// compiled hosts, paths, backends, certificates and the problems out. The Services'
// endpoints come from the real control side (ServiceProxyState in cluster mode over
// EndpointSlices), the TLS Secrets hold real certificates made with openssl.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ServiceProxyState } from '../src/control/service-proxy-state.ts';
import { compileIngresses, type CompileResult } from '../src/ingress/compile.ts';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { IngressClassObject, IngressObject, K8sObject, SecretObject } from '../src/k8s/objects.ts';

const dir = mkdtempSync(join(tmpdir(), 'ting-compile-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function certificate(name: string): { crt: string; key: string } {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, `${name}.key`),
    '-out', join(dir, `${name}.crt`), '-days', '30', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`], { stdio: 'ignore' });
  return { crt: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') };
}
const certA = certificate('a.example.test');
const certB = certificate('b.example.test');
const b64 = (s: string): string => Buffer.from(s).toString('base64');

function secret(name: string, c: { crt: string; key: string }): string {
  return `apiVersion: v1
kind: Secret
metadata: {name: ${name}, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: ${b64(c.crt)}, tls.key: ${b64(c.key)}}
`;
}

/** Services web (ready endpoints 10.244.1.2, .3 on 8080; one not ready), api (only a terminating serving endpoint), other. */
const CLUSTER = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.100, ports: [{name: http, port: 80, targetPort: 8080}, {name: admin, port: 81, targetPort: 9090}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: admin, port: 9090}]
endpoints:
  - {addresses: [10.244.1.2]}
  - {addresses: [10.244.1.3]}
  - {addresses: [10.244.1.4], conditions: {ready: false, serving: false}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec: {clusterIP: 10.96.0.101, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: default, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - {addresses: [10.244.2.9], conditions: {ready: false, serving: true, terminating: true}}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: default}
spec: {clusterIP: 10.96.0.102, ports: [{port: 8000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: other-1, namespace: default, labels: {kubernetes.io/service-name: other}}
addressType: IPv4
ports: [{port: 8000}]
endpoints: [{addresses: [10.244.2.7]}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: tapir, annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}
spec: {controller: tapir.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
${secret('a-tls', certA)}---
${secret('b-tls', certB)}`;

function parse(text: string, file: string): K8sObject[] {
  const r = parseManifest(text, file);
  assert.deepEqual(r.problems, [], `${file} parses`);
  return r.objects;
}
const clusterObjects = parse(CLUSTER, 'cluster.yaml');
const state = new ServiceProxyState({ name: 'node-1' }, 'api');
state.apply(clusterObjects.map((current) => ({ previous: undefined, current })));
const view = state.sync().view;

function compile(ingressYaml: string, opts: { withoutClass?: boolean } = {}): CompileResult {
  const objects = [...clusterObjects, ...parse(ingressYaml, 'ing.yaml')];
  const secrets = new Map<string, SecretObject>();
  for (const o of objects) if (o.kind === 'Secret') secrets.set(`${o.metadata.namespace}/${o.metadata.name}`, o);
  return compileIngresses({
    ingresses: objects.filter((o): o is IngressObject => o.kind === 'Ingress'),
    classes: objects.filter((o): o is IngressClassObject => o.kind === 'IngressClass' && !(opts.withoutClass === true && o.metadata.name === 'tapir')),
    secrets,
    view,
  }, { className: 'tapir', generation: 7 });
}

function ingress(name: string, spec: string, extra = ''): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ${name}, namespace: default${extra}}
spec:
${spec.replace(/^/gm, '  ')}
---
`;
}

const web = (path: string, pathType = 'Prefix', port = 'number: 80'): string => `{path: "${path}", pathType: ${pathType}, backend: {service: {name: web, port: {${port}}}}}`;
const rule = (host: string, ...paths: string[]): string => `- ${host === '' ? '' : `host: "${host}"\n  `}http:\n    paths:\n${paths.map((p) => `      - ${p}`).join('\n')}`;

/** "host path pathType -> backend" lines of a config, in precedence order. */
function routes(r: CompileResult): string[] {
  return r.config.hosts.flatMap((h) => h.paths.map((p) => `${h.host || '*'} ${p.path} ${p.pathType} -> ${p.backend.name}${p.canary === null ? '' : ` canary ${p.canary.backend.name} ${p.canary.weight}%${p.canary.header === null ? '' : ` ${p.canary.header.name}=${p.canary.header.value}`}`} [${p.ingress}]`));
}

interface Case {
  name: string;
  yaml: string;
  withoutClass?: boolean;
  routes?: string[];
  /** Regexes each problem must match, in order (exactly as many problems). */
  problems?: RegExp[];
  ours?: string[];
  check?(r: CompileResult): void;
}

const CASES: Case[] = [
  {
    name: 'ingressClassName of our class, of another controller, of a class that does not exist; none with our class the default',
    yaml: ingress('mine', `ingressClassName: tapir\nrules:\n${rule('a.example.test', web('/'))}`)
      + ingress('theirs', `ingressClassName: nginx\nrules:\n${rule('b.example.test', web('/'))}`)
      + ingress('ghost', `ingressClassName: ghost\nrules:\n${rule('c.example.test', web('/'))}`)
      + ingress('default', `rules:\n${rule('d.example.test', web('/'))}`),
    routes: ['a.example.test / Prefix -> default/web:80 [default/mine]', 'd.example.test / Prefix -> default/web:80 [default/default]'],
    problems: [],
    ours: ['default/default', 'default/mine'],
  },
  {
    name: 'our class missing: an Ingress naming it is reported and gets no address; one without class is not ours',
    withoutClass: true,
    yaml: ingress('mine', `ingressClassName: tapir\nrules:\n${rule('a.example.test', web('/'))}`) + ingress('default', `rules:\n${rule('d.example.test', web('/'))}`),
    routes: [],
    problems: [/ing\.yaml: document 1 \(Ingress default\/mine\): spec\.ingressClassName: IngressClass "tapir" does not exist/],
    ours: [],
  },
  {
    name: 'the kubernetes.io/ingress.class annotation decides when set (ingress-nginx)',
    yaml: ingress('legacy', `rules:\n${rule('a.example.test', web('/'))}`, ', annotations: {kubernetes.io/ingress.class: tapir}')
      + ingress('legacy-nginx', `ingressClassName: tapir\nrules:\n${rule('b.example.test', web('/'))}`, ', annotations: {kubernetes.io/ingress.class: nginx}'),
    routes: ['a.example.test / Prefix -> default/web:80 [default/legacy]'],
    problems: [],
  },
  {
    name: 'precedence: longer paths first, Exact before Prefix on the same path, trailing slash of Prefix not counted',
    yaml: ingress('one', `rules:\n${rule('a.example.test', web('/'), web('/foo', 'Prefix'), web('/foo', 'Exact'), web('/foo/bar/'), web('/aaa', 'ImplementationSpecific'))}`),
    routes: [
      'a.example.test /foo/bar/ Prefix -> default/web:80 [default/one]',
      'a.example.test /foo Exact -> default/web:80 [default/one]',
      'a.example.test /foo Prefix -> default/web:80 [default/one]',
      'a.example.test /aaa ImplementationSpecific -> default/web:80 [default/one]',
      'a.example.test / Prefix -> default/web:80 [default/one]',
    ],
    problems: [],
  },
  {
    name: 'several Ingresses on one host merge; the same host+path+pathType: the oldest wins, the newer is reported',
    yaml: ingress('newer', `rules:\n${rule('a.example.test', `{path: /shop/, pathType: Prefix, backend: {service: {name: other, port: {number: 8000}}}}`, web('/blog'))}`, ', creationTimestamp: "2026-01-02T00:00:00Z"')
      + ingress('older', `rules:\n${rule('a.example.test', web('/shop'))}`, ', creationTimestamp: "2026-01-01T00:00:00Z"'),
    routes: ['a.example.test /shop Prefix -> default/web:80 [default/older]', 'a.example.test /blog Prefix -> default/web:80 [default/newer]'],
    problems: [/\(Ingress default\/newer\): spec\.rules\[0\]\.http\.paths\[0\]\.path: host "a\.example\.test" path "\/shop\/" \(Prefix\) is already routed by the older Ingress default\/older, which wins/],
  },
  {
    name: 'same creation time: namespace/name order decides',
    yaml: ingress('b', `rules:\n${rule('', web('/x', 'Exact', 'name: admin'))}`) + ingress('a', `rules:\n${rule('', web('/x', 'Exact'))}`),
    routes: ['* /x Exact -> default/web:80 [default/a]'],
    problems: [/Ingress default\/b\).*already routed by the older Ingress default\/a/],
  },
  {
    name: 'bad paths are reported and skipped, the rest of the Ingress serves',
    yaml: ingress('bad', `rules:\n${rule('a.example.test', web('foo'), web('/foo.*', 'Prefix'), web('/api/(.*)', 'ImplementationSpecific'), web('/ok'), web('', 'Exact'))}`),
    routes: ['a.example.test /ok Prefix -> default/web:80 [default/bad]'],
    problems: [
      /paths\[0\]\.path: "foo" must start with "\/"; this path is not served, the rest of the Ingress is/,
      /paths\[1\]\.path: "\/foo\.\*" has regular expression characters, which a Prefix path matches literally/,
      /paths\[2\]\.path: "\/api\/\(\.\*\)" looks like a regular expression, but tapir\.dev\/use-regex is not "true"/,
      /paths\[4\]\.path: required for pathType Exact/,
    ],
  },
  {
    name: 'use-regex and rewrite-target (which implies use-regex); an invalid regex is reported',
    yaml: ingress('re', `rules:\n${rule('a.example.test', web('/api/(.*)', 'ImplementationSpecific'), web('/x/([', 'ImplementationSpecific'))}`, ', annotations: {nginx.ingress.kubernetes.io/rewrite-target: /$1}'),
    routes: ['a.example.test /api/(.*) ImplementationSpecific -> default/web:80 [default/re]'],
    problems: [/paths\[1\]\.path: "\/x\/\(\[" is not a valid regular expression/],
    check(r) {
      const o = r.config.hosts[0]!.paths[0]!.options;
      assert.equal(o.useRegex, true);
      assert.equal(o.rewriteTarget, '/$1');
    },
  },
  {
    name: 'backends: ready endpoints with the target port; by port name; serving+terminating fallback; unknown Service, unknown port, resource backend are 503 with a problem',
    yaml: ingress('b', `rules:\n${rule('a.example.test',
      web('/web'), web('/admin', 'Prefix', 'name: admin'),
      `{path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}`,
      `{path: /gone, pathType: Prefix, backend: {service: {name: gone, port: {number: 80}}}}`,
      `{path: /badport, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}`,
      `{path: /bucket, pathType: Prefix, backend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: static}}}`)}`),
    problems: [
      /paths\[3\]\.backend\.service\.name: Service default\/gone does not exist; requests for this rule get 503 until it does/,
      /paths\[4\]\.backend\.service\.port: Service default\/web has no port 8080 \(its ports: 80 \(http\), 81 \(admin\)\)/,
      /paths\[5\]\.backend\.resource: resource backends are not supported by Tapir/,
    ],
    check(r) {
      const by = new Map(r.config.hosts[0]!.paths.map((p) => [p.path, p.backend]));
      assert.deepEqual(by.get('/web')!.endpoints, [{ ip: '10.244.1.2', port: 8080 }, { ip: '10.244.1.3', port: 8080 }]);
      assert.deepEqual(by.get('/admin')!.endpoints, [{ ip: '10.244.1.2', port: 9090 }, { ip: '10.244.1.3', port: 9090 }]);
      assert.equal(by.get('/admin')!.name, 'default/web:admin');
      assert.deepEqual(by.get('/api')!.endpoints, [{ ip: '10.244.2.9', port: 8080 }]);
      assert.deepEqual(by.get('/gone')!.endpoints, []);
      assert.deepEqual(by.get('/badport')!.endpoints, []);
      assert.deepEqual(by.get('/bucket')!.endpoints, []);
      assert.match(by.get('/bucket')!.name, /StorageBucket\/static \(a resource backend, not supported\)/);
    },
  },
  {
    name: 'TLS: the Secret of each host by SNI, redirect on by default for TLS hosts, off by annotation; a missing Secret leaves the default certificate',
    yaml: ingress('tls', `tls:\n- {hosts: [a.example.test], secretName: a-tls}\n- {hosts: [b.example.test], secretName: b-tls}\n- {hosts: [c.example.test], secretName: nope}\nrules:\n${rule('a.example.test', web('/'))}\n${rule('b.example.test', web('/'))}\n${rule('c.example.test', web('/'))}\n${rule('plain.example.test', web('/'))}`)
      + ingress('noredirect', `tls:\n- {hosts: [b.example.test], secretName: b-tls}\nrules:\n${rule('b.example.test', web('/insecure'))}`, ', annotations: {tapir.dev/ssl-redirect: "false"}'),
    problems: [/spec\.tls\[2\]\.secretName: Secret default\/nope does not exist .*hosts c\.example\.test get the default certificate/],
    check(r) {
      const h = new Map(r.config.hosts.map((x) => [x.host, x]));
      assert.equal(h.get('a.example.test')!.tls, 'default/a-tls');
      assert.equal(h.get('b.example.test')!.tls, 'default/b-tls');
      assert.equal(h.get('c.example.test')!.tls, null);
      assert.equal(h.get('a.example.test')!.paths[0]!.options.sslRedirect, true);
      assert.equal(h.get('plain.example.test')!.paths[0]!.options.sslRedirect, false);
      const b = new Map(h.get('b.example.test')!.paths.map((p) => [p.path, p.options.sslRedirect]));
      assert.deepEqual([...b], [['/insecure', false], ['/', true]]);
      assert.deepEqual([...r.config.certificates.keys()].sort(), ['default/a-tls', 'default/b-tls']);
      assert.equal(r.config.certificates.get('default/a-tls')!.certPem, certA.crt);
      assert.deepEqual(r.config.certificates.get('default/b-tls')!.hosts, ['b.example.test']);
    },
  },
  {
    name: 'annotations: tapir.dev/ and nginx aliases, tapir.dev/ wins; bad values and unknown ones reported',
    yaml: ingress('ann', `rules:\n${rule('a.example.test', web('/'))}`, `, annotations: {
    nginx.ingress.kubernetes.io/proxy-body-size: 8k, tapir.dev/proxy-read-timeout: "120", nginx.ingress.kubernetes.io/proxy-read-timeout: "5",
    nginx.ingress.kubernetes.io/proxy-connect-timeout: "2", tapir.dev/backend-protocol: HTTPS, tapir.dev/affinity: cookie,
    tapir.dev/session-cookie-name: route, tapir.dev/session-cookie-max-age: "3600",
    nginx.ingress.kubernetes.io/configuration-snippet: "more_set_headers x", tapir.dev/ssl-redirect: maybe}`),
    problems: [
      /metadata\.annotations\["nginx\.ingress\.kubernetes\.io\/configuration-snippet"\]: is not supported by Tapir and is ignored/,
      /metadata\.annotations\["tapir\.dev\/ssl-redirect"\]: "maybe" must be "true" or "false"/,
    ],
    check(r) {
      const p = r.config.hosts[0]!.paths[0]!;
      assert.deepEqual(p.options, { sslRedirect: false, affinityCookie: { name: 'route', maxAgeSeconds: 3600, path: '/' }, proxyBodySize: 8192, proxyReadTimeoutMs: 120_000, proxyConnectTimeoutMs: 2000, rewriteTarget: null, useRegex: false });
      assert.equal(p.backend.protocol, 'HTTPS');
    },
  },
  {
    name: 'defaults: 1 MiB body, 60 s read, 5 s connect, HTTP',
    yaml: ingress('d', `rules:\n${rule('a.example.test', web('/'))}`, ', annotations: {nginx.ingress.kubernetes.io/proxy-body-size: "0"}'),
    problems: [],
    check(r) {
      const o = r.config.hosts[0]!.paths[0]!.options;
      assert.equal(o.proxyBodySize, 0);
      assert.equal(o.proxyReadTimeoutMs, 60_000);
      assert.equal(o.proxyConnectTimeoutMs, 5000);
      assert.equal(compile(ingress('d', `rules:\n${rule('a.example.test', web('/'))}`)).config.hosts[0]!.paths[0]!.options.proxyBodySize, 1024 * 1024);
    },
  },
  {
    name: 'canary by weight and header attaches to the main rule of the same host and path; without a main rule it is reported',
    yaml: ingress('main', `rules:\n${rule('a.example.test', web('/'), web('/v2'))}`)
      + ingress('canary', `rules:\n${rule('a.example.test', `{path: /, pathType: Prefix, backend: {service: {name: other, port: {number: 8000}}}}`, `{path: /nomain, pathType: Prefix, backend: {service: {name: other, port: {number: 8000}}}}`)}`,
        ', annotations: {tapir.dev/canary: "true", tapir.dev/canary-weight: "30", nginx.ingress.kubernetes.io/canary-by-header: X-Canary, nginx.ingress.kubernetes.io/canary-by-header-value: yes}'),
    routes: ['a.example.test /v2 Prefix -> default/web:80 [default/main]', 'a.example.test / Prefix -> default/web:80 canary default/other:8000 30% x-canary=yes [default/main]'],
    problems: [/Ingress default\/canary\): spec\.rules\[0\]\.http\.paths\[1\]: canary for host "a\.example\.test" path "\/nomain" \(Prefix\) has no main Ingress/],
  },
  {
    name: 'defaultBackend: the oldest Ingress that has one; a later one is reported',
    yaml: ingress('second', 'defaultBackend: {service: {name: other, port: {number: 8000}}}', ', creationTimestamp: "2026-02-01T00:00:00Z"')
      + ingress('first', 'defaultBackend: {service: {name: web, port: {number: 80}}}', ', creationTimestamp: "2026-01-01T00:00:00Z"'),
    routes: [],
    problems: [/Ingress default\/second\): spec\.defaultBackend: ignored: the older Ingress default\/first already gives the default backend/],
    check(r) {
      assert.equal(r.config.defaultBackend!.name, 'default/web:80');
      assert.equal(r.config.defaultBackend!.endpoints.length, 2);
    },
  },
  {
    name: 'wildcard and empty hosts are kept as written',
    yaml: ingress('w', `rules:\n${rule('*.foo.com', web('/'))}\n${rule('', web('/'))}`),
    routes: ['* / Prefix -> default/web:80 [default/w]', '*.foo.com / Prefix -> default/web:80 [default/w]'],
    problems: [],
  },
];

for (const c of CASES) {
  test(`compile: ${c.name}`, () => {
    const r = compile(c.yaml, { withoutClass: c.withoutClass ?? false });
    assert.equal(r.config.generation, 7);
    if (c.routes !== undefined) assert.deepEqual(routes(r), c.routes);
    if (c.problems !== undefined) {
      const got = r.problems.map((p) => p.message);
      assert.equal(got.length, c.problems.length, `problems:\n${got.join('\n')}`);
      c.problems.forEach((re, i) => assert.match(got[i]!, re));
    }
    if (c.ours !== undefined) assert.deepEqual([...r.ours].sort(), c.ours);
    c.check?.(r);
  });
}

test('the compiled config is frozen and deterministic', () => {
  const yaml = CASES[4]!.yaml;
  const a = compile(yaml);
  const b = compile(yaml);
  assert.deepEqual(routes(a), routes(b));
  assert.ok(Object.isFrozen(a.config.hosts[0]));
  assert.ok(Object.isFrozen(a.config.hosts[0]!.paths[0]!.options));
});

test('validation: Ingress structure with file, document and field; a TLS Secret whose key is not its certificate\'s', () => {
  const bad = parseManifest(`apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: x}
spec:
  rules:
    - host: "Foo.example.test"
      http:
        paths:
          - {path: /, backend: {service: {name: web, port: {number: 80, name: http}}}}
---
apiVersion: v1
kind: Secret
metadata: {name: mixed}
type: kubernetes.io/tls
data: {tls.crt: ${b64(certA.crt)}, tls.key: ${b64(certB.key)}}
---
apiVersion: v1
kind: Secret
metadata: {name: nokey}
type: kubernetes.io/tls
stringData: {tls.crt: "not a certificate"}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: c}
spec: {}
`, 'bad.yaml');
  assert.deepEqual(bad.problems, [
    'bad.yaml: document 1 (Ingress default/x): spec.rules[0].host: "Foo.example.test" is not a valid host name (a DNS name, or "*." and one; no IP addresses, ports or upper case)',
    'bad.yaml: document 1 (Ingress default/x): spec.rules[0].http.paths[0].backend.service.port: must have exactly one of number and name',
    'bad.yaml: document 1 (Ingress default/x): spec.rules[0].http.paths[0].pathType: required field is missing',
    'bad.yaml: document 2 (Secret default/mixed): data["tls.key"]: is not the key of the certificate in tls.crt (CN=a.example.test)',
    'bad.yaml: document 3 (Secret default/nokey): data["tls.key"]: required field is missing (a kubernetes.io/tls Secret holds the certificate chain in tls.crt and its key in tls.key, PEM)',
    'bad.yaml: document 4 (IngressClass c): spec.controller: required field is missing',
  ]);
  const good = parseManifest(`${secret('a-tls', certA)}---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {password: aHVudGVyMg==}
`, 'good.yaml');
  assert.deepEqual(good.problems, []);
  const [tls, opaque] = good.objects as SecretObject[];
  assert.deepEqual(tls!.tls!.dnsNames, ['a.example.test']);
  assert.equal(opaque!.type, 'Opaque');
  assert.equal(opaque!.tls, null, 'other Secrets keep no data');
});

/**
 * Services of each family for the upstream tests: web-v6 (IPv6 only), web-dual (IPv4
 * primary, both families ready), web-dual6 (IPv6 primary), half (IPv4 primary whose
 * IPv4 endpoint is not ready, its IPv6 one is), going (IPv4 primary: only a terminating
 * IPv4 endpoint, a ready IPv6 one).
 */
const DUAL = `apiVersion: v1
kind: Service
metadata: {name: web-v6, namespace: default}
spec: {clusterIP: fd00:10:96::10, clusterIPs: [fd00:10:96::10], ipFamilies: [IPv6], ipFamilyPolicy: SingleStack, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v6-1, namespace: default, labels: {kubernetes.io/service-name: web-v6}}
addressType: IPv6
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ["fd00:10:244:1::2"]}, {addresses: ["fd00:10:244:2::3"]}]
${['web-dual', 'web-dual6', 'half', 'going'].map((name, i) => {
  const six = name === 'web-dual6';
  const ready4 = name === 'half' ? '{ready: false, serving: false}' : name === 'going' ? '{ready: false, serving: true, terminating: true}' : '{ready: true}';
  return `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: default}
spec:
  clusterIPs: [${six ? `"fd00:10:96::2${i}", 10.96.0.12${i}` : `10.96.0.12${i}, "fd00:10:96::2${i}"`}]
  ipFamilies: [${six ? 'IPv6, IPv4' : 'IPv4, IPv6'}]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-4, namespace: default, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.244.1.2], conditions: ${ready4}}, {addresses: [10.244.2.3], conditions: ${ready4}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-6, namespace: default, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv6
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ["fd00:10:244:1::2"]}, {addresses: ["fd00:10:244:2::3"]}]
`;
}).join('')}`;

test('upstreams of each family: an IPv6-only Service\'s endpoints are IPv6; a dual-stack Service\'s are its primary family\'s, the other family when the primary has none ready', () => {
  const objects = parse(DUAL, 'dual.yaml');
  const dual = new ServiceProxyState({ name: 'node-1' }, 'api');
  dual.apply(objects.map((current) => ({ previous: undefined, current })));
  const dualView = dual.sync().view;
  for (const name of ['web-v6', 'web-dual', 'web-dual6', 'half', 'going']) {
    assert.deepEqual(dualView.services.find((s) => s.name === name)?.problems, [], `${name} is accepted`);
  }
  const ing = parse(ingress('all', `rules:\n${['web-v6', 'web-dual', 'web-dual6', 'half', 'going'].map((name) => rule(`${name}.example.test`, `{path: /, pathType: Prefix, backend: {service: {name: ${name}, port: {number: 80}}}}`)).join('\n')}`), 'ing.yaml');
  const r = compileIngresses({ ingresses: ing as IngressObject[], classes: clusterObjects.filter((o): o is IngressClassObject => o.kind === 'IngressClass'), secrets: new Map(), view: dualView }, { className: 'tapir', generation: 1 });
  assert.deepEqual(r.problems, []);
  const upstreams = Object.fromEntries(r.config.hosts.map((h) => [h.host, h.paths[0]!.backend.endpoints.map((e) => `${e.ip} ${e.port}`)]));
  const v4 = ['10.244.1.2 8080', '10.244.2.3 8080'];
  const v6 = ['fd00:10:244:1::2 8080', 'fd00:10:244:2::3 8080'];
  assert.deepEqual(upstreams, {
    'web-v6.example.test': v6,
    'web-dual.example.test': v4,
    'web-dual6.example.test': v6,
    'half.example.test': v6,
    // A ready endpoint of the other family before a terminating one of the primary.
    'going.example.test': v6,
  });
});

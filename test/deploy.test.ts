// deploy/: the static manifests (kubectl apply -k), the Helm chart that renders the same
// objects, and the install-cni script of the DaemonSet's init container. Real clients:
// kubectl 1.34 and helm from .tapir/bin (no API server: kubectl kustomize and kubectl's
// --local commands decode the objects offline), and the install script run for real
// against scratch directories standing in for the host's CNI directories.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseAgentConfigDocuments } from '../src/agent/config-file.ts';
import { ControlServer, type ControlHandler } from '../src/agent/control-server.ts';
import type { PortInfo } from '../src/agent/protocol.ts';

const ROOT = join(import.meta.dirname, '..');
const KUBECTL = join(ROOT, '.tapir/bin/kubectl');
const HELM = join(ROOT, '.tapir/bin/helm');
const STATIC = join(ROOT, 'deploy/kubernetes');
const CHART = join(ROOT, 'deploy/helm/tapir');
const INSTALL_CNI = join(ROOT, 'deploy/image/install-cni.sh');
const NODE = process.execPath;

interface Run { code: number; stdout: string; stderr: string }

// helm and kubectl keep caches and config under HOME/XDG dirs: give them a scratch
// home, and no kubeconfig, so nothing here can reach (or depend on) a cluster.
const scratch = mkdtempSync(join(tmpdir(), 'tapir-deploy-test-'));
const CLIENT_ENV = {
  ...process.env,
  HOME: scratch,
  XDG_CACHE_HOME: join(scratch, 'cache'),
  XDG_CONFIG_HOME: join(scratch, 'config'),
  XDG_DATA_HOME: join(scratch, 'data'),
  KUBECONFIG: join(scratch, 'no-kubeconfig'),
};
after(() => rmSync(scratch, { recursive: true, force: true }));

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = CLIENT_ENV): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: 60_000, maxBuffer: 16 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await run(cmd, args, env);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

type Obj = Record<string, any>;

/** Every document of a YAML stream (empty ones dropped); a syntax error fails the test with its place. */
function documents(text: string, where: string): Obj[] {
  const out: Obj[] = [];
  for (const doc of parseAllDocuments(text)) {
    assert.deepEqual(doc.errors.map((e) => e.message), [], `${where}: YAML errors`);
    const value = doc.toJS() as unknown;
    if (value !== null && value !== undefined) out.push(value as Obj);
  }
  return out;
}


const keyOf = (o: Obj): string => `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;

/** The ConfigMap's embedded files compared as what they say, not as text. */
function normalise(o: Obj): Obj {
  const copy = structuredClone(o);
  if (copy.kind === 'ConfigMap' && copy.data !== undefined) {
    for (const [k, v] of Object.entries(copy.data as Record<string, string>)) {
      if (k.endsWith('.yaml')) copy.data[k] = documents(v, `ConfigMap data ${k}`);
      else if (k.endsWith('.conflist')) copy.data[k] = JSON.parse(v);
    }
  }
  return copy;
}

function byKey(objs: Obj[]): Map<string, Obj> {
  const m = new Map<string, Obj>();
  for (const o of objs) {
    assert.ok(!m.has(keyOf(o)), `${keyOf(o)} twice`);
    m.set(keyOf(o), normalise(o));
  }
  return m;
}

async function render(...sets: string[]): Promise<Obj[]> {
  const args = ['template', 'tapir', CHART, '--namespace', 'kube-system'];
  for (const s of sets) args.push('--set', s);
  return documents(await ok(HELM, args), 'helm template');
}

async function renderFails(...sets: string[]): Promise<string> {
  const args = ['template', 'tapir', CHART, '--namespace', 'kube-system'];
  for (const s of sets) args.push('--set', s);
  const r = await run(HELM, args);
  assert.notEqual(r.code, 0, `helm template ${sets.join(' ')} should fail`);
  return r.stderr;
}

const find = (objs: Obj[], kind: string): Obj => {
  const o = objs.find((x) => x.kind === kind);
  assert.ok(o, `no ${kind}`);
  return o;
};
const container = (ds: Obj, name: string): Obj =>
  [...ds.spec.template.spec.initContainers, ...ds.spec.template.spec.containers].find((c: Obj) => c.name === name);
const envOf = (c: Obj, name: string): Obj | undefined => c.env.find((e: Obj) => e.name === name);
const volume = (ds: Obj, name: string): Obj => ds.spec.template.spec.volumes.find((v: Obj) => v.name === name);
const mount = (c: Obj, name: string): Obj | undefined => c.volumeMounts.find((m: Obj) => m.name === name);

describe('static manifests (deploy/kubernetes)', () => {
  let objs: Obj[] = [];
  before(async () => {
    objs = documents(await ok(KUBECTL, ['kustomize', STATIC]), 'kubectl kustomize');
  });

  test('every file parses, and the kustomization lists every one of them', () => {
    const kustomization = documents(readFileSync(join(STATIC, 'kustomization.yaml'), 'utf8'), 'kustomization.yaml')[0]!;
    const files = readdirSync(STATIC).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
    assert.deepEqual([...kustomization.resources].sort(), files);
    const fromFiles = files.flatMap((f) => documents(readFileSync(join(STATIC, f), 'utf8'), f));
    for (const o of fromFiles) {
      assert.ok(typeof o.apiVersion === 'string' && typeof o.kind === 'string' && typeof o.metadata?.name === 'string', `${keyOf(o)}: apiVersion, kind and metadata.name`);
    }
    // kustomize adds nothing and drops nothing.
    assert.deepEqual(byKey(objs), byKey(fromFiles));
    assert.deepEqual(objs.map((o) => o.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet', 'ServiceAccount']);
    for (const o of objs) if (!o.kind.startsWith('Cluster')) assert.equal(o.metadata.namespace, 'kube-system', keyOf(o));
  });

  test("kubectl decodes every object into its typed form offline", async () => {
    // --local: no server. `set image` converts the DaemonSet into apps/v1's Go types, so a
    // wrong type anywhere in it (a string port, a list where a map goes) fails here.
    const out = await ok(KUBECTL, ['set', 'image', '--local', '-f', join(STATIC, 'daemonset.yaml'), 'tapir=localhost/tapir:check', '-o', 'json']);
    assert.equal(container(JSON.parse(out), 'tapir').image, 'localhost/tapir:check');
    for (const f of ['rbac.yaml', 'configmap.yaml']) {
      const listed = await ok(KUBECTL, ['label', '--local', '-f', join(STATIC, f), 'check=1', '-o', 'name']);
      assert.ok(listed.trim().split('\n').length >= 1, f);
    }
    // And it does fail on a bad one: the check is not a formality.
    const bad = join(scratch, 'bad-ds.yaml');
    writeFileSync(bad, readFileSync(join(STATIC, 'daemonset.yaml'), 'utf8').replace('containerPort: 10256', 'containerPort: "healthz"'));
    const r = await run(KUBECTL, ['set', 'image', '--local', '-f', bad, 'tapir=x', '-o', 'json']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /containerPort/);
  });

  test('the DaemonSet: host network, privileged, every taint tolerated, NODE_NAME, no surge', () => {
    const ds = find(objs, 'DaemonSet');
    const spec = ds.spec.template.spec;
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.priorityClassName, 'system-node-critical');
    assert.equal(spec.serviceAccountName, 'tapir');
    assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
    assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
    assert.deepEqual(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels);

    const agent = container(ds, 'tapir');
    assert.equal(agent.securityContext.privileged, true);
    assert.equal(agent.securityContext.runAsUser, 0);
    assert.deepEqual(agent.args, ['agent', '--config', '/etc/tapir/config.yaml', '--kubernetes']);
    assert.deepEqual(envOf(agent, 'NODE_NAME')?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
    for (const name of ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT']) {
      assert.equal(envOf(agent, name)?.valueFrom?.configMapKeyRef?.optional, true, `${name} only when the ConfigMap has it`);
    }
    assert.deepEqual(agent.livenessProbe.httpGet, { path: '/livez', port: 10256 });
    assert.deepEqual(agent.readinessProbe.httpGet, { path: '/healthz', port: 10256 });
    assert.deepEqual(agent.startupProbe.httpGet, { path: '/livez', port: 10256 });
    assert.equal(agent.resources.limits, undefined, 'no limits on the data plane');

    const hostPaths = Object.fromEntries(spec.volumes.filter((v: Obj) => v.hostPath).map((v: Obj) => [v.name, v.hostPath]));
    assert.deepEqual(hostPaths, {
      'run-tapir': { path: '/run/tapir', type: 'DirectoryOrCreate' },
      'dev-net-tun': { path: '/dev/net/tun', type: 'CharDevice' },
      'run-netns': { path: '/run/netns', type: 'DirectoryOrCreate' },
      'cni-bin': { path: '/opt/cni/bin', type: 'DirectoryOrCreate' },
      'cni-conf': { path: '/etc/cni/net.d', type: 'DirectoryOrCreate' },
    });
    assert.equal(mount(agent, 'run-netns')?.mountPropagation, 'HostToContainer');
    assert.equal(mount(agent, 'run-tapir')?.mountPath, '/run/tapir');
    assert.equal(mount(agent, 'dev-net-tun')?.mountPath, '/dev/net/tun');
    assert.equal(mount(agent, 'cni-bin'), undefined, 'the agent never writes the CNI directories');

    const install = container(ds, 'install-cni');
    assert.equal(spec.initContainers.length, 1);
    assert.equal(install.securityContext.runAsUser, 0);
    assert.equal(install.securityContext.privileged, undefined);
    assert.deepEqual(install.securityContext.capabilities, { drop: ['ALL'] });
    assert.equal(mount(install, 'cni-bin')?.mountPath, envOf(install, 'CNI_BIN_DIR')?.value);
    assert.equal(mount(install, 'cni-conf')?.mountPath, envOf(install, 'CNI_CONF_DIR')?.value);
    assert.equal(install.image, agent.image);
  });

  test('the ConfigMap: both documents of config.yaml, and a conflist that agrees with them', () => {
    const cm = normalise(find(objs, 'ConfigMap'));
    const [kubeProxy, tapir] = cm.data['config.yaml'] as Obj[];
    assert.equal(cm.data['config.yaml'].length, 2);
    assert.equal(kubeProxy!.apiVersion, 'kubeproxy.config.k8s.io/v1alpha1');
    assert.equal(kubeProxy!.kind, 'KubeProxyConfiguration');
    assert.equal(kubeProxy!.healthzBindAddress, '0.0.0.0:10256');
    assert.equal(kubeProxy!.metricsBindAddress, '127.0.0.1:10249');
    assert.equal(tapir!.apiVersion, 'tapir.dev/v1alpha1');
    assert.equal(tapir!.kind, 'TapirAgentConfiguration');
    const conflist = cm.data['10-tapir.conflist'];
    assert.equal(conflist.plugins[0].type, 'tapir-cni');
    assert.equal(conflist.plugins[0].controlSocket, tapir!.controlSocket);
    assert.ok(tapir!.controlSocket.startsWith(`${tapir!.stateDir}/`));
    // The conflist shipped for hand installs (deploy/cni) says the same.
    assert.deepEqual(conflist, JSON.parse(readFileSync(join(ROOT, 'deploy/cni/10-tapir.conflist'), 'utf8')));
    const ds = find(objs, 'DaemonSet');
    assert.equal(envOf(container(ds, 'install-cni'), 'CNI_CONF_SOURCE')?.value, '/etc/tapir/10-tapir.conflist');
    assert.equal(volume(ds, 'config').configMap.name, cm.metadata.name);
  });

  test('RBAC: kube-proxy\'s node-proxier rules less Endpoints, bound to the DaemonSet\'s account', () => {
    const role = find(objs, 'ClusterRole');
    const rules = role.rules.flatMap((r: Obj) => r.apiGroups.flatMap((g: string) => r.resources.map((res: string) => `${g}/${res}: ${[...r.verbs].sort().join(',')}`))).sort();
    assert.deepEqual(rules, [
      '/events: create,patch,update',
      '/nodes: get,list,watch',
      '/services: list,watch',
      'discovery.k8s.io/endpointslices: list,watch',
      'events.k8s.io/events: create,patch,update',
    ]);
    const binding = find(objs, 'ClusterRoleBinding');
    const sa = find(objs, 'ServiceAccount');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    assert.equal(find(objs, 'DaemonSet').spec.template.spec.serviceAccountName, sa.metadata.name);
  });

  test("the agent's config reader takes the ConfigMap's config.yaml", () => {
    const docs = documents(find(objs, 'ConfigMap').data['config.yaml'], 'config.yaml');
    // As shipped: the only problems allowed are the node's own fields, which one
    // ConfigMap for every node cannot hold (cluster mode takes them from the Node).
    let problems: readonly string[] = [];
    try {
      parseAgentConfigDocuments(docs, 'config.yaml', { nodeName: 'node-1', cores: 2 });
    } catch (err) {
      problems = (err as { problems?: readonly string[] }).problems ?? [String(err)];
    }
    const perNode = /^config\.yaml: document 2 \(TapirAgentConfiguration\): (underlay|underlay\.address|underlay\.interface|podCIDR): required field is missing$/;
    assert.deepEqual(problems.filter((p) => !perNode.test(p)), []);
    // With what the Node gives, the whole configuration reads, and nothing is ignored.
    const withNode = structuredClone(docs);
    withNode[1]!.underlay = { interface: 'eth0', address: '192.0.2.21' };
    withNode[1]!.podCIDR = '10.244.1.0/24';
    const c = parseAgentConfigDocuments(withNode, 'config.yaml', { nodeName: 'node-1', cores: 2 });
    assert.equal(c.nodeName, 'node-1');
    assert.deepEqual([c.vni, c.mtu, c.hostTun, c.stateDir, c.controlSocket], [4242, 1450, 'tapir0', '/run/tapir', '/run/tapir/agent.sock']);
    assert.deepEqual([String(c.clusterCIDR), String(c.serviceCIDR)], ['10.244.0.0/16', '10.96.0.0/12']);
    assert.deepEqual([c.minSyncIntervalMs, c.maxSyncIntervalMs], [1000, 30000]);
    assert.deepEqual(c.kubeProxy.ignored, []);
    assert.deepEqual(c.kubeProxy.healthzBindAddress, { host: '0.0.0.0', port: 10256 });
  });
});

describe('Helm chart (deploy/helm/tapir)', () => {
  test('helm lint --strict', async () => {
    const out = await ok(HELM, ['lint', '--strict', CHART]);
    assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test('with default values it renders exactly the objects of deploy/kubernetes', async () => {
    const rendered = byKey(await render());
    const fromStatic = byKey(documents(await ok(KUBECTL, ['kustomize', STATIC]), 'kubectl kustomize'));
    assert.deepEqual([...rendered.keys()].sort(), [...fromStatic.keys()].sort());
    for (const [key, o] of fromStatic) assert.deepEqual(rendered.get(key), o, key);
  });

  test('image, CNI paths, config fields and scheduling values change what they should', async () => {
    const objs = await render(
      'image.repository=registry.example/tapir', 'image.tag=9.9.9', 'image.pullPolicy=Always',
      'cni.binDir=/var/lib/rancher/k3s/data/current/bin', 'cni.confDir=/var/lib/rancher/k3s/agent/etc/cni/net.d',
      'cni.confName=05-tapir.conflist', 'cni.exclusive=true', 'cni.ipam.dataDir=/var/lib/tapir/ipam',
      'config.tapir.vni=77', 'config.tapir.stateDir=/run/tapir2', 'config.tapir.controlSocket=/run/tapir2/a.sock',
      'config.kubeProxy.healthzBindAddress=0.0.0.0:10300', 'config.kubeProxy.clusterCIDR=10.32.0.0/12',
      'apiServer.host=192.0.2.10', 'apiServer.port=6443',
      'priorityClassName=tapir-critical', 'tolerations=null', 'resources.limits.memory=1Gi',
      'extraArgs={--v=2}', 'nodeSelector.tapir\\.dev/enabled=true',
    );
    const ds = find(objs, 'DaemonSet');
    const spec = ds.spec.template.spec;
    const agent = container(ds, 'tapir');
    const install = container(ds, 'install-cni');
    for (const c of [agent, install]) {
      assert.equal(c.image, 'registry.example/tapir:9.9.9');
      assert.equal(c.imagePullPolicy, 'Always');
    }
    assert.equal(volume(ds, 'cni-bin').hostPath.path, '/var/lib/rancher/k3s/data/current/bin');
    assert.equal(volume(ds, 'cni-conf').hostPath.path, '/var/lib/rancher/k3s/agent/etc/cni/net.d');
    assert.equal(envOf(install, 'CNI_CONF_NAME')?.value, '05-tapir.conflist');
    assert.equal(envOf(install, 'CNI_CONF_SOURCE')?.value, '/etc/tapir/05-tapir.conflist');
    assert.equal(envOf(install, 'CNI_EXCLUSIVE')?.value, 'true');
    assert.equal(volume(ds, 'run-tapir').hostPath.path, '/run/tapir2');
    assert.equal(mount(agent, 'run-tapir')?.mountPath, '/run/tapir2');
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) assert.equal(agent[probe].httpGet.port, 10300, probe);
    assert.equal(agent.ports[0].containerPort, 10300);
    assert.equal(spec.priorityClassName, 'tapir-critical');
    assert.equal(spec.tolerations, undefined);
    assert.deepEqual(spec.nodeSelector, { 'tapir.dev/enabled': 'true' });
    assert.deepEqual(agent.resources, { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '1Gi' } });
    assert.deepEqual(agent.args, ['agent', '--config', '/etc/tapir/config.yaml', '--kubernetes', '--v=2']);

    const cm = normalise(find(objs, 'ConfigMap'));
    const [kubeProxy, tapir] = cm.data['config.yaml'] as Obj[];
    assert.equal(tapir!.vni, 77);
    assert.equal(tapir!.mtu, 1450, 'fields not set keep their defaults');
    assert.equal(kubeProxy!.clusterCIDR, '10.32.0.0/12');
    assert.equal(kubeProxy!.healthzBindAddress, '0.0.0.0:10300');
    assert.equal(cm.data['10-tapir.conflist'], undefined);
    const conflist = cm.data['05-tapir.conflist'];
    assert.equal(conflist.plugins[0].controlSocket, '/run/tapir2/a.sock');
    assert.deepEqual(conflist.plugins[0].ipam, { type: 'tapir-ipam', dataDir: '/var/lib/tapir/ipam' });
    assert.equal(cm.data.apiServerHost, '192.0.2.10');
    assert.equal(cm.data.apiServerPort, '6443');
  });

  test('the DNS server: the Corefile key, its ports, and kube-dns with kubeDnsService (the same object as deploy/kubernetes/kube-dns)', async () => {
    const objs = await render('kubeDnsService=true');
    const service = find(objs, 'Service');
    const fromStatic = documents(readFileSync(join(STATIC, 'kube-dns/service.yaml'), 'utf8'), 'kube-dns/service.yaml');
    assert.deepEqual(service, fromStatic[0]);
    const ds = find(objs, 'DaemonSet');
    const agent = container(ds, 'tapir');
    const ports = agent.ports.map((p: Obj) => `${p.name}:${p.containerPort}/${p.protocol}`);
    assert.deepEqual(ports.slice(1), ['dns:53/UDP', 'dns-tcp:53/TCP', 'metrics:9153/TCP']);
    // What kube-dns selects and targets exists on the agents' pods.
    for (const [k, v] of Object.entries(service.spec.selector as Record<string, string>)) assert.equal(ds.spec.template.metadata.labels[k], v);
    for (const p of service.spec.ports as Obj[]) assert.ok(ports.some((q: string) => q.startsWith(`${p.targetPort}:`)), p.targetPort);
    const cm = find(objs, 'ConfigMap');
    assert.match(cm.data.Corefile, /^\.:53 \{\n    errors\n/);
    const [, tapir] = documents(cm.data['config.yaml'], 'config.yaml');
    assert.deepEqual(tapir!.dns, { corefile: '/etc/tapir/Corefile' });

    // Without the DNS server: no DNS ports on the host network, and kube-dns is refused.
    const off = await render('config.tapir.dns=null');
    assert.deepEqual(container(find(off, 'DaemonSet'), 'tapir').ports.map((p: Obj) => p.name), ['healthz']);
    const refused = await run(HELM, ['template', 'tapir', CHART, '--namespace', 'kube-system', '--set', 'config.tapir.dns=null', '--set', 'kubeDnsService=true']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /kubeDnsService needs config.tapir.dns/);
  });

  test('a custom name renames every object and every reference to one', async () => {
    const objs = await render('name=tapir-canary');
    const ds = find(objs, 'DaemonSet');
    assert.deepEqual(objs.map((o) => o.metadata.name).sort(), ['tapir-canary', 'tapir-canary', 'tapir-canary', 'tapir-canary', 'tapir-canary-config']);
    assert.equal(ds.spec.template.spec.serviceAccountName, 'tapir-canary');
    assert.equal(volume(ds, 'config').configMap.name, 'tapir-canary-config');
    assert.equal(envOf(container(ds, 'tapir'), 'KUBERNETES_SERVICE_HOST')?.valueFrom.configMapKeyRef.name, 'tapir-canary-config');
    assert.equal(find(objs, 'ClusterRoleBinding').roleRef.name, 'tapir-canary');
  });

  test('values that cannot work are refused with the reason', async () => {
    assert.match(await renderFails('updateStrategy.rollingUpdate.maxSurge=1'), /maxSurge must be 0/);
    assert.match(await renderFails('config.tapir.controlSocket=/var/run/elsewhere.sock'), /must be inside config.tapir.stateDir/);
    assert.match(await renderFails('apiServer.host=192.0.2.10'), /apiServer.host and apiServer.port go together/);
    assert.match(await renderFails('config.kubeProxy.healthzBindAddress=0.0.0.0'), /needs a port/);
    // values.schema.json: misspelt values and wrong types are named, not rendered.
    assert.match(await renderFails('imagee.tag=1'), /additional properties 'imagee' not allowed/);
    assert.match(await renderFails('cni.exclusive=yes'), /\/cni\/exclusive.*want boolean/);
    assert.match(await renderFails('cni.confName=10-tapir.conf'), /\/cni\/confName/);
    assert.match(await renderFails('image.pullPolicy=Sometimes'), /\/image\/pullPolicy/);
  });
});

describe('image recipe (deploy/image)', () => {
  // Building it takes podman and minutes (scripts/build-image.sh does, and checks the
  // result); here, that the recipe and the DaemonSet agree on the paths in the image.
  const containerfile = readFileSync(join(ROOT, 'deploy/image/Containerfile'), 'utf8');

  test('the DaemonSet runs the commands the image has where the image has them', async () => {
    const ds = find(documents(await ok(KUBECTL, ['kustomize', STATIC]), 'kubectl kustomize'), 'DaemonSet');
    assert.deepEqual(container(ds, 'tapir').command, ['/opt/tapir/bin/tapir']);
    assert.match(containerfile, /^ENTRYPOINT \["\/opt\/tapir\/bin\/tapir"\]$/m);
    assert.match(containerfile, /^COPY --from=build \/opt\/tapir\/bin \/opt\/tapir\/bin$/m);
    const [installer] = container(ds, 'install-cni').command;
    assert.match(containerfile, new RegExp(`^COPY --from=build --chmod=0755 /out/tapir-install-cni ${installer}$`, 'm'));
    assert.match(containerfile, /^COPY deploy\/image\/install-cni\.sh \/out\/tapir-install-cni$/m);
    // install-cni's defaults are the paths the DaemonSet mounts.
    const script = readFileSync(INSTALL_CNI, 'utf8');
    for (const e of container(ds, 'install-cni').env) assert.ok(script.includes(`${e.name}=\${${e.name}:-${e.value}}`), `${e.name} default`);
  });

  test('every file the recipe copies from the context exists, and the ignore file lets it through', () => {
    const ignore = readFileSync(join(ROOT, 'deploy/image/containerignore'), 'utf8').split('\n').filter((l) => l.startsWith('!')).map((l) => l.slice(1));
    const sources = [...containerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(' '));
    assert.ok(sources.length >= 5);
    for (const src of sources) {
      if (src.includes('[')) continue; // node_modules.ta[r]: present only when build-image.sh passes it
      assert.ok(existsSync(join(ROOT, src)), `${src} exists`);
      assert.ok(ignore.includes(src), `${src} is let through by containerignore`);
    }
  });

  test('the build script is valid shell', async () => {
    await ok('bash', ['-n', join(ROOT, 'scripts/build-image.sh')]);
    await ok('sh', ['-n', INSTALL_CNI]);
  });
});

describe('install-cni (deploy/image/install-cni.sh)', () => {
  // Scratch directories stand in for the host's /opt/cni/bin and /etc/cni/net.d; the
  // "image" is this checkout (src/, package.json) and the Node.js running this test.
  let work = '';
  let bin = '';
  let conf = '';
  let source = '';
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'tapir-deploy-cni-'));
    bin = join(work, 'opt-cni-bin');
    conf = join(work, 'etc-cni-net.d');
    mkdirSync(bin);
    mkdirSync(conf);
    source = join(work, '10-tapir.conflist');
    // The shipped conflist, with the agent's socket and the IPAM directory in scratch.
    const conflist = JSON.parse(readFileSync(join(ROOT, 'deploy/cni/10-tapir.conflist'), 'utf8'));
    conflist.plugins[0].controlSocket = join(work, 'agent.sock');
    conflist.plugins[0].ipam.dataDir = join(work, 'ipam');
    writeFileSync(source, JSON.stringify(conflist, null, 2));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  const install = (env: Record<string, string> = {}): Promise<Run> => run('sh', [INSTALL_CNI], {
    PATH: process.env.PATH, CNI_BIN_DIR: bin, CNI_CONF_DIR: conf, CNI_CONF_SOURCE: source,
    TAPIR_HOME: ROOT, TAPIR_NODE: NODE, ...env,
  });
  const bundles = (): string[] => readdirSync(join(bin, 'tapir-cni.d')).sort();
  const version = async (): Promise<Obj> => JSON.parse(await ok(join(bin, 'tapir-cni'), [], { CNI_COMMAND: 'VERSION', PATH: '/usr/bin:/bin' }));

  test('installs a plugin that runs from the bundle alone, and the conflist last', async () => {
    writeFileSync(join(conf, '05-old.conflist'), '{"cniVersion":"0.4.0","name":"old","plugins":[]}');
    const r = await install();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(bundles().length, 1);
    const entry = readFileSync(join(bin, 'tapir-cni'), 'utf8');
    assert.match(entry, new RegExp(`# bundle: ${bundles()[0]}`));
    assert.equal(statSync(join(bin, 'tapir-cni')).mode & 0o777, 0o755);
    // With a PATH that has no node: the plugin brings its own, and its own loader.
    const v = await version();
    assert.equal(v.cniVersion, '1.1.0');
    assert.ok(v.supportedVersions.includes('1.0.0'));
    assert.deepEqual(JSON.parse(readFileSync(join(conf, '10-tapir.conflist'), 'utf8')), JSON.parse(readFileSync(source, 'utf8')));
    assert.ok(existsSync(join(conf, '05-old.conflist')), 'CNI_EXCLUSIVE=false leaves other networks alone');
    // No temporary file is left where a runtime looks.
    assert.deepEqual(readdirSync(bin).sort(), ['tapir-cni', 'tapir-cni.d']);
    assert.deepEqual(readdirSync(conf).sort(), ['05-old.conflist', '10-tapir.conflist']);
    // Run through the bundled loader: the loader is in the bundle's lib/.
    const b = join(bin, 'tapir-cni.d', bundles()[0]!);
    assert.ok(existsSync(join(b, 'lib', readFileSync(join(b, 'loader'), 'utf8').trim())));
  });

  test('the installed plugin, run as a runtime runs it with the installed conflist, adds and deletes a pod through the agent', async () => {
    // The agent's side: its real control server, with a handler that records ports.
    const ports = new Map<string, PortInfo>();
    const handler: ControlHandler = {
      status: () => ({ node: 'node-1', pid: process.pid, podCIDR: '10.244.1.0/24', gateway: '10.244.1.1', mtu: 1450, ports: ports.size }),
      addPort: (r) => {
        const p: PortInfo = { containerId: r.containerId, ifName: r.ifName, hostName: 'tp00000001', mac: '0a:58:0a:f4:01:02', netns: r.netns, ip: r.ip ?? '', prefixLength: r.prefixLength ?? 0, gateway: r.gateway ?? '', mtu: 1450, network: r.network ?? '' };
        ports.set(`${r.containerId}/${r.ifName}`, p);
        return p;
      },
      delPort: (r) => { ports.delete(`${r.containerId}/${r.ifName}`); },
      checkPort: () => {},
      listPorts: () => [...ports.values()],
    };
    const server = await ControlServer.listen({ path: join(work, 'agent.sock'), handler });
    try {
      // libcni's way: the conflist's name and cniVersion joined to the plugin's entry.
      const conflist = JSON.parse(readFileSync(join(conf, '10-tapir.conflist'), 'utf8'));
      const stdin = JSON.stringify({ cniVersion: conflist.cniVersion, name: conflist.name, ...conflist.plugins[0] });
      const netns = join(work, 'netns-file');
      writeFileSync(netns, '');
      const cni = (command: string): Promise<Run> => new Promise((resolve) => {
        const child = execFile(join(bin, conflist.plugins[0].type), [], {
          env: { PATH: '/usr/bin:/bin', CNI_COMMAND: command, CNI_CONTAINERID: 'c0ffee', CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: bin, CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0' },
          encoding: 'utf8', timeout: 30_000,
        }, (err, stdout, stderr) => resolve({ code: err === null ? 0 : Number((err as { code?: unknown }).code ?? 1), stdout, stderr }));
        child.stdin!.end(stdin);
      });
      const add = await cni('ADD');
      assert.equal(add.code, 0, add.stderr + add.stdout);
      const result = JSON.parse(add.stdout);
      assert.equal(result.ips[0].address, '10.244.1.2/24');
      assert.equal(result.ips[0].gateway, '10.244.1.1');
      assert.deepEqual([...ports.keys()], ['c0ffee/eth0']);
      assert.ok(existsSync(join(work, 'ipam', 'tapir', '10.244.1.2')), 'the address is recorded in the IPAM directory');
      const del = await cni('DEL');
      assert.equal(del.code, 0, del.stderr + del.stdout);
      assert.deepEqual([...ports.keys()], []);
      assert.ok(!existsSync(join(work, 'ipam', 'tapir', '10.244.1.2')));
    } finally {
      await server.close();
    }
  });

  test('a second run with the same image installs nothing new', async () => {
    const before = bundles();
    const r = await install();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /is installed already/);
    assert.deepEqual(bundles(), before);
  });

  test('a new image gets a new bundle; the previous one stays, older ones go', async () => {
    const first = bundles()[0]!;
    const images: string[] = [];
    for (const n of [1, 2]) {
      const home = join(work, `image-${n}`);
      cpSync(join(ROOT, 'src'), join(home, 'src'), { recursive: true });
      cpSync(join(ROOT, 'package.json'), join(home, 'package.json'));
      writeFileSync(join(home, 'src/cni/main.ts'), `${readFileSync(join(home, 'src/cni/main.ts'), 'utf8')}\n// image ${n}\n`);
      images.push(home);
    }
    assert.equal((await install({ TAPIR_HOME: images[0]! })).code, 0);
    const second = bundles().find((b) => b !== first)!;
    assert.deepEqual(bundles(), [first, second].sort());
    assert.equal((await install({ TAPIR_HOME: images[1]! })).code, 0);
    const third = bundles().find((b) => b !== first && b !== second)!;
    assert.ok(third);
    assert.deepEqual(bundles(), [second, third].sort(), 'the first bundle is removed, the previous one kept');
    assert.match(readFileSync(join(bin, 'tapir-cni'), 'utf8'), new RegExp(`# bundle: ${third}`));
    assert.equal((await version()).cniVersion, '1.1.0');
  });

  test('a broken conflist is refused and nothing on the host changes', async () => {
    const conflistBefore = readFileSync(join(conf, '10-tapir.conflist'), 'utf8');
    const entryBefore = readFileSync(join(bin, 'tapir-cni'), 'utf8');
    const broken = join(work, 'broken.conflist');
    writeFileSync(broken, '{"cniVersion": "1.0.0", "name": "tapir", "plugins": [');
    const r = await install({ CNI_CONF_SOURCE: broken, TAPIR_HOME: ROOT });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not a valid conflist; nothing was installed/);
    assert.equal(readFileSync(join(conf, '10-tapir.conflist'), 'utf8'), conflistBefore);
    assert.equal(readFileSync(join(bin, 'tapir-cni'), 'utf8'), entryBefore);
    for (const [env, message] of [
      [{ CNI_CONF_NAME: '../x.conflist' }, /must be a plain file name/],
      [{ CNI_CONF_NAME: 'x.conf' }, /must end in .conflist/],
      [{ CNI_EXCLUSIVE: 'yes' }, /must be true or false/],
      [{ CNI_BIN_DIR: join(work, 'missing') }, /is not a directory/],
    ] as const) {
      const bad = await install(env);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, message);
    }
  });

  test('CNI_EXCLUSIVE=true sets every other network configuration aside', async () => {
    writeFileSync(join(conf, '99-other.conf'), '{}');
    const r = await install({ CNI_EXCLUSIVE: 'true', TAPIR_HOME: ROOT });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(conf).sort(), ['05-old.conflist.tapir_bak', '10-tapir.conflist', '99-other.conf.tapir_bak']);
  });
});

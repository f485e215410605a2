// The lab's Ingress controller (`tapir lab up --ingress`), laid out as ingress-nginx's
// deployment is: a namespace `ingress-tapir`, one controller Pod per node (pinned by
// spec.nodeName, as a DaemonSet would), each running `tapir ingress` with its proxy on
// ports 80 and 443 and /healthz on 10254 (its readiness probe), behind the LoadBalancer
// Service `ingress-tapir/ingress-tapir-controller` (PreferDualStack in a dual-stack lab)
// that the lab's load-balancer controller gives an IPv4 address from the pool (the pool
// has no IPv6 addresses: over IPv6, the Service's IPv6 cluster IP and node ports on the
// nodes' IPv6 addresses serve), and the IngressClass `tapir` marked as the
// default class. With the default topology's Service default/web, a demo Ingress routes
// host web.example.test to it. Everything goes through `lab apply`'s path, in both
// modes: in cluster mode the controllers read the lab API server (the lab's admin
// kubeconfig on its underlay address) and write the Ingresses' status; in manifest mode
// they read the manifest directory.
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { CONTROLLER_NAME, DEFAULT_CLASS_NAME } from '../../ingress/compile.ts';
import { isDualStack, usesApi, type LabState } from '../state.ts';
import type { ManifestSource } from './topology-manifests.ts';
import { apiObjectsOrProblem } from './api-apply.ts';
import { loadObjects } from './manifests.ts';

export const INGRESS_NAMESPACE = 'ingress-tapir';
export const INGRESS_SERVICE = 'ingress-tapir-controller';
export const INGRESS_STATUS_PORT = 10254;
/** The demo Ingress's host (the default topology's Service default/web behind it). */
export const DEMO_HOST = 'web.example.test';

const TAPIR = fileURLToPath(new URL('../../../bin/tapir', import.meta.url));

/** "controller-node-1": the controller Pod of a node. */
export function controllerPodName(node: string): string {
  return `controller-${node}`;
}

/** The objects of the lab's Ingress controller, as one manifest stream; `demo` adds the web.example.test Ingress. */
export function ingressManifests(state: LabState, demo: boolean): ManifestSource {
  const source = usesApi(state)
    ? ['--kubeconfig', state.apiServer.labKubeconfig, '--publish-service', `${INGRESS_NAMESPACE}/${INGRESS_SERVICE}`]
    : ['--manifests', state.manifests, '--publish-service', `${INGRESS_NAMESPACE}/${INGRESS_SERVICE}`];
  const command = [TAPIR, 'ingress', ...source, '--class', DEFAULT_CLASS_NAME, '--http-port', '80', '--https-port', '443',
    '--status-port', String(INGRESS_STATUS_PORT), '--log-format', 'text'];
  const labels = { 'app.kubernetes.io/name': INGRESS_NAMESPACE, 'app.kubernetes.io/component': 'controller' };
  const objects: Record<string, unknown>[] = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: INGRESS_NAMESPACE } },
    {
      apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass',
      metadata: { name: DEFAULT_CLASS_NAME, annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } },
      spec: { controller: CONTROLLER_NAME },
    },
    ...state.nodes.map((node) => ({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name: controllerPodName(node.name), namespace: INGRESS_NAMESPACE, labels },
      spec: {
        nodeName: node.name,
        containers: [{
          name: 'controller',
          command,
          ports: [{ name: 'http', containerPort: 80 }, { name: 'https', containerPort: 443 }, { name: 'metrics', containerPort: INGRESS_STATUS_PORT }],
          readinessProbe: { httpGet: { path: '/healthz', port: INGRESS_STATUS_PORT }, periodSeconds: 1, timeoutSeconds: 1 },
        }],
      },
    })),
    {
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: INGRESS_SERVICE, namespace: INGRESS_NAMESPACE, labels },
      spec: {
        type: 'LoadBalancer',
        // A dual-stack lab: a cluster IP and node ports of each family, so that clients
        // of both reach the Ingress (the proxy listens on both: src/ingress/listen.ts).
        ...(isDualStack(state) ? { ipFamilyPolicy: 'PreferDualStack' } : {}),
        externalTrafficPolicy: 'Cluster',
        selector: labels,
        ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'https', port: 443, targetPort: 'https' }],
      },
    },
  ];
  if (demo) {
    objects.push({
      apiVersion: 'networking.k8s.io/v1', kind: 'Ingress',
      metadata: { name: 'web', namespace: 'default' },
      spec: { ingressClassName: DEFAULT_CLASS_NAME, rules: [{ host: DEMO_HOST, http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } }] },
    });
  }
  return { file: 'ingress-tapir.yaml', text: objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n') };
}

/**
 * Waits until every controller Pod is Ready (its /healthz answers: the proxy listens
 * with its first configuration), so that `lab up --ingress` returns with the Ingress
 * serving; returns the Pods still not ready after `timeoutMs`.
 */
export async function waitForControllers(state: LabState, timeoutMs: number): Promise<string[]> {
  const wanted = state.nodes.map((n) => controllerPodName(n.name));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { objects } = usesApi(state) ? await apiObjectsOrProblem(state.apiServer) : loadObjects(state.manifests);
    const ready = new Set(objects.filter((o) => o.kind === 'Pod' && o.metadata.namespace === INGRESS_NAMESPACE && o.status.ready).map((o) => o.metadata.name));
    const pending = wanted.filter((name) => !ready.has(name));
    if (pending.length === 0 || Date.now() > deadline) return pending.map((name) => `${INGRESS_NAMESPACE}/${name}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

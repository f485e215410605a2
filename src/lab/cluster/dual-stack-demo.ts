// The demo Services a dual-stack lab adds beside the topology's (`tapir lab up
// --ip-family dual` with the default topology's `web` pods): one of each IP family
// policy, so that both halves of the Service API can be tried at once. The topology's
// own Services stay as written (no ipFamilyPolicy: SingleStack, the cluster's primary
// family, IPv4).
import type { ManifestSource } from './topology-manifests.ts';

/** Node port of the RequireDualStack demo Service: served on every node's IPv4 and IPv6 address. */
export const DUAL_DEMO_NODE_PORT = 30086;

export const DUAL_STACK_DEMO: ManifestSource = {
  file: 'dual-stack demo Services',
  text: `# One Service per ipFamilyPolicy over the web pods (HTTP echo on their port "http").
apiVersion: v1
kind: Service
metadata: { name: web-dual }
spec:
  # A cluster IP per family when the cluster has both.
  ipFamilyPolicy: PreferDualStack
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: v1
kind: Service
metadata: { name: web-v6 }
spec:
  # IPv6 only: one IPv6 cluster IP.
  ipFamilyPolicy: SingleStack
  ipFamilies: [IPv6]
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: v1
kind: Service
metadata: { name: web-dual-nodeport }
spec:
  # Both families or none; the node port on every node's IPv4 and IPv6 address.
  type: NodePort
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6, IPv4]
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http, nodePort: ${DUAL_DEMO_NODE_PORT} }]
---
apiVersion: v1
kind: Service
metadata: { name: web-dual-lb }
spec:
  # A load-balancer address per family (the lab's IPv4 and IPv6 pools).
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: v1
kind: Service
metadata: { name: echo-udp-v6 }
spec:
  ipFamilyPolicy: SingleStack
  ipFamilies: [IPv6]
  selector: { app: web }
  ports: [{ name: udp, port: 9000, protocol: UDP, targetPort: udp-echo }]
`,
};

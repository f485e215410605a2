// The built-in default topology, identical to lab/topologies/default.yaml (a test keeps
// them equal) so `tapir lab up` works from an installed package without the file.
export const DEFAULT_TOPOLOGY_YAML = `# The default lab (also built into src/lab/default-topology.ts; a test keeps the two equal):
# two nodes (zone-a, zone-b) with two pods each, one external client on the underlay, and
# a demo Service of each kind. Every pod runs the built-in echo workload: HTTP echo on 8080
# (port "http"), TCP and UDP echo on 9000 ("tcp-echo", "udp-echo").
nodes:
  - name: node-1
    pods:
      - { name: web-1a, labels: { app: web } }
      - { name: web-1b, labels: { app: web } }
  - name: node-2
    pods:
      - { name: web-2a, labels: { app: web } }
      - { name: web-2b, labels: { app: web } }
client:
  name: client
services:
  # ClusterIP: port 80 -> the pods' named port "http" (8080). Not on .10: clusters give
  # 10.96.0.10 to kube-dns by convention, and the lab keeps it for its DNS service.
  - apiVersion: v1
    kind: Service
    metadata: { name: web }
    spec:
      clusterIP: 10.96.0.100
      selector: { app: web }
      ports: [{ name: http, port: 80, targetPort: http }]
  # NodePort 30080 on every node's underlay address.
  - apiVersion: v1
    kind: Service
    metadata: { name: web-nodeport }
    spec:
      type: NodePort
      selector: { app: web }
      ports: [{ name: http, port: 80, targetPort: http, nodePort: 30080 }]
  # LoadBalancer: the lab assigns an address from 172.30.0.200-250; node-1 answers ARP for it.
  - apiVersion: v1
    kind: Service
    metadata: { name: web-lb }
    spec:
      type: LoadBalancer
      externalTrafficPolicy: Cluster
      selector: { app: web }
      ports: [{ name: http, port: 80, targetPort: http }]
  # LoadBalancer keeping the client's address: local endpoints only, health-check node port.
  - apiVersion: v1
    kind: Service
    metadata: { name: web-local }
    spec:
      type: LoadBalancer
      externalTrafficPolicy: Local
      selector: { app: web }
      ports: [{ name: http, port: 80, targetPort: http }]
  # An external IP on the underlay (the lab routes it to node-1).
  - apiVersion: v1
    kind: Service
    metadata: { name: web-ext }
    spec:
      selector: { app: web }
      externalIPs: [172.30.0.150]
      ports: [{ name: http, port: 80, targetPort: http }]
  # ClientIP session affinity: one client stays on one endpoint.
  - apiVersion: v1
    kind: Service
    metadata: { name: web-affinity }
    spec:
      selector: { app: web }
      sessionAffinity: ClientIP
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } }
      ports: [{ name: http, port: 80, targetPort: http }]
  # UDP: port 9000 -> the pods' UDP echo.
  - apiVersion: v1
    kind: Service
    metadata: { name: echo-udp }
    spec:
      selector: { app: web }
      ports: [{ name: udp, port: 9000, protocol: UDP, targetPort: udp-echo }]
`;

// The built-in default topology, identical to lab/topologies/default.yaml (a test keeps
// them equal) so `tapir lab up` works from an installed package without the file.
export const DEFAULT_TOPOLOGY_YAML = `# The default lab (also built into src/lab/default-topology.ts; a test keeps the two equal):
# two nodes with two pods each and one external client on the underlay.
# Every pod runs the built-in echo workload: HTTP echo on 8080, TCP and UDP echo on 9000.
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
`;

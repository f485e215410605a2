// The main job's closing act (scripts/lab.sh): with the default lab up, show pods
// talking across nodes with their own addresses, and each demo Service doing its job.
// Every command here is what a user would type: `tapir lab exec`, curl, ping.
import { execFileSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { delimiter, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const TAPIR = fileURLToPath(new URL('../bin/tapir', import.meta.url));

/**
 * How the user runs this checkout's tapir: `tapir` when that name on the PATH is it
 * (the set-up links it into /usr/local/bin), else its path, so every command printed
 * here works when pasted.
 */
function userCommand(): string {
  const ours = realpathSync(TAPIR);
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    try {
      if (realpathSync(join(dir, 'tapir')) === ours) return 'tapir';
    } catch { /* not there */ }
  }
  const rel = relative(process.cwd(), TAPIR);
  return rel.startsWith('..') ? TAPIR : `./${rel}`;
}
const TAPIR_CMD = userCommand();
const lab = process.argv.includes('--name') ? process.argv[process.argv.indexOf('--name') + 1]! : 'tapir';

function tapir(...args: string[]): string {
  return execFileSync(TAPIR, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
}

function inLab(target: string, ...argv: string[]): string {
  try {
    return tapir('lab', 'exec', '--name', lab, target, '--', ...argv).trim();
  } catch (err) {
    return `(failed: ${((err as { stderr?: string }).stderr ?? String(err)).trim().split('\n')[0]})`;
  }
}

function echo(target: string, url: string): string {
  const out = inLab(target, 'curl', '-sS', '--max-time', '3', url);
  try {
    const r = JSON.parse(out) as { pod: string; node: string; client: string };
    return `answered by ${r.pod} on ${r.node}, which saw the client as ${r.client}`;
  } catch {
    return out;
  }
}

interface Status {
  dataplane: string;
  pods: { name: string; node: string; ip: string }[];
  nodes: { name: string; underlayIP: string }[];
  client: { ip: string } | null;
  services?: { name: string; type: string; clusterIP: string; loadBalancerIPs: string[]; externalIPs: string[]; ports: { port: number; nodePort: number | null }[] }[];
}

const s = JSON.parse(tapir('lab', 'status', '--name', lab, '--json')) as Status;
const pod = (name: string) => s.pods.find((p) => p.name === name)!;
const a = pod('web-1a'), b = pod('web-2a');
console.log(`\n== Pods talk across nodes by their own addresses (dataplane: ${s.dataplane}) ==`);
console.log(`$ ${TAPIR_CMD} lab exec ${a.name} -- ping -c 2 ${b.ip}`);
console.log(inLab(a.name, 'ping', '-c', '2', '-i', '0.2', b.ip).split('\n').slice(-2).join('\n'));
console.log(`$ ${TAPIR_CMD} lab exec ${a.name} -- curl http://${b.ip}:8080/   (${a.name} is ${a.ip} on ${a.node}; no NAT between pods)`);
console.log(`  ${echo(a.name, `http://${b.ip}:8080/`)}`);
console.log(`$ ${TAPIR_CMD} lab exec ${s.nodes[0]!.name} -- curl http://${b.ip}:8080/   (the node reaches pods through the host port)`);
console.log(`  ${echo(s.nodes[0]!.name, `http://${b.ip}:8080/`)}`);

const svc = (name: string) => s.services?.find((x) => x.name === name);
console.log('\n== Services ==');
const web = svc('web');
if (web !== undefined) {
  for (let i = 0; i < 3; i++) console.log(`ClusterIP ${web.clusterIP}:80 from ${a.name}: ${echo(a.name, `http://${web.clusterIP}/`)}`);
}
const np = svc('web-nodeport');
if (np !== undefined && s.client !== null) {
  const port = np.ports[0]!.nodePort;
  console.log(`NodePort ${s.nodes[1]!.underlayIP}:${port} from the external client: ${echo('client', `http://${s.nodes[1]!.underlayIP}:${port}/`)}`);
}
for (const name of ['web-lb', 'web-local']) {
  const lb = svc(name);
  const ip = lb?.loadBalancerIPs[0];
  if (ip !== undefined) console.log(`LoadBalancer ${name} ${ip} from the client: ${echo('client', `http://${ip}/`)}`);
}
const ext = svc('web-ext');
if (ext?.externalIPs[0] !== undefined) console.log(`externalIP ${ext.externalIPs[0]} from the client: ${echo('client', `http://${ext.externalIPs[0]}/`)}`);
const t = TAPIR_CMD;
console.log(`\nTry: ${t} lab status --name ${lab} | ${t} stats --lab ${lab} --node node-1 | ${t} capture --lab ${lab} --node node-1 underlay -w /tmp/u.pcap`);
console.log(`The lab serves the Kubernetes API: ${t} lab kubeconfig --name ${lab} > /tmp/lab.kubeconfig; .tapir/bin/kubectl --kubeconfig /tmp/lab.kubeconfig get pods -o wide`);
console.log(`Remove everything: scripts/lab.sh down   (or ${t} lab down --name ${lab})`);

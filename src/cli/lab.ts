// `tapir lab`: a multi-node Kubernetes-like testbed on one machine, built from network
// namespaces (see src/lab/). Never touches the root namespace's network configuration.
import { CliError } from './errors.ts';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs, type ParseArgsOptionDescriptor } from 'node:util';
import { labApply, labDelete } from '../lab/cluster/apply.ts';
import { execIn, resolveTarget } from '../lab/network/exec.ts';
import { checkLabName, DEFAULT_LAB_NAME, labDown, labUp } from '../lab/lifecycle.ts';
import { listLabs, loadState, OBJECT_STORES, requireState, type ObjectStore } from '../lab/state.ts';
import { formatStatus, labStatus } from '../lab/status.ts';
import { DATAPLANES, IP_FAMILIES, PROXY_MODES, UNDERLAY_FAMILIES, type Dataplane, type IpFamily, type ProxyMode, type UnderlayFamily } from '../lab/topology.ts';
import type { ManifestSource } from '../lab/cluster/topology-manifests.ts';

const USAGE = `Usage:
  tapir lab up [TOPOLOGY.yaml] [--name NAME] [--dataplane tapir|kernel] [--proxy-mode tapir|iptables|nftables]
               [--source kubernetes|manifests] [--ip-family ipv4|dual|ipv6] [--underlay ipv4|ipv6] [--ingress] [--json] [--keep-on-failure]
  tapir lab status [--name NAME] [--json]
  tapir lab apply -f FILE|- [--name NAME]
  tapir lab delete -f FILE|- [--name NAME]
  tapir lab exec [--name NAME] NODE|POD|NAMESPACE/POD|CLIENT|underlay -- COMMAND [ARGS...]
  tapir lab down [--name NAME]
  tapir lab list
  tapir lab kubeconfig [--name NAME]   (a kubeconfig for kubectl on this host, on stdout)
  tapir lab apiserver --dir DIR ...   (the lab's Kubernetes API server; --help for its options)

Without a topology file, up builds the default: 2 nodes with 2 pods each and an external
client and demo Services. NAME defaults to the topology's name, else "${DEFAULT_LAB_NAME}". State lives in
/run/tapir/lab/NAME/. --source: where the lab keeps its Kubernetes objects: kubernetes (default)
in the lab's API server, which the agents watch in cluster mode (in-cluster credentials,
NODE_NAME) and kubectl reaches (tapir lab kubeconfig); manifests in the manifests/ directory
the agents watch (clusterless).
apply/delete add, change and remove Namespaces, Pods, Services, EndpointSlices, Endpoints,
Ingresses, IngressClasses and Secrets
as kubectl would (all or nothing; a rejected file names file, document and field).
--ingress: also the Ingress controller (tapir ingress), one Pod per node in namespace
ingress-tapir behind the LoadBalancer Service ingress-tapir/ingress-tapir-controller, the
default IngressClass tapir, and with the default topology the Ingress web.example.test -> web:80.
--ip-family dual: a dual-stack lab (either dataplane): the nodes get IPv6 underlay addresses
and a /64 each of fd00:10:244::/56, every pod an IPv4 and an IPv6 address, and lab up checks
pod-to-pod traffic over both families; demo Services of each ipFamilyPolicy (web-dual,
web-v6, web-dual-nodeport on node port 30086, web-dual-lb, echo-udp-v6) are served over IPv6
by NAT66 (or the kernel's IPv6 proxier).
--ip-family ipv6: an IPv6-only lab (either dataplane), as kind's ipFamily: ipv6: every pod an
IPv6 address only, Services and kube-dns in fd00:10:96::/112, node ports and load balancers on
the nodes' IPv6 addresses; the overlay runs over the nodes' IPv4 underlay unless --underlay ipv6.
--underlay ipv6 (with --ip-family dual or ipv6): VXLAN rides the nodes' IPv6 underlay addresses
(either dataplane; the pod MTU is 20 bytes smaller); IPv4 and IPv6 pod traffic both ride it.
--proxy-mode: who implements Services: the Tapir agents (dataplane tapir), or kernel rules
the lab writes like kube-proxy's iptables or nftables mode (dataplane kernel; default iptables).
Every namespace is named tl-NAME-…; nothing is configured in the root namespace.
Environment: TAPIR_LAB_TAPIR_BIN / TAPIR_LAB_CNI_BIN run another tapir / tapir-cni build.`;

/** Every option of `tapir lab`; each subcommand accepts the ones it names. */
const OPTIONS = {
  name: { type: 'string' },
  dataplane: { type: 'string' },
  'proxy-mode': { type: 'string' },
  'ip-family': { type: 'string' },
  underlay: { type: 'string' },
  source: { type: 'string' },
  // -f FILE, -fFILE and --filename FILE, like kubectl.
  filename: { type: 'string', short: 'f' },
  json: { type: 'boolean' },
  'keep-on-failure': { type: 'boolean' },
  ingress: { type: 'boolean' },
} as const satisfies Record<string, ParseArgsOptionDescriptor>;

type OptionName = keyof typeof OPTIONS;

interface Options { name?: string; dataplane?: Dataplane; proxyMode?: ProxyMode; ipFamily?: IpFamily; underlay?: UnderlayFamily; source?: ObjectStore; file?: string; json: boolean; keepOnFailure: boolean; ingress: boolean; positional: string[]; command: string[] }

/** Parses options up to "--"; everything after it is the command for exec. */
function parseOptions(args: string[], allowed: readonly OptionName[]): Options {
  const options = Object.fromEntries(allowed.map((name) => [name, OPTIONS[name]]));
  // Not strict: the checks below report an unknown or valueless option in lab's own words.
  const { tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });
  const out: Options = { json: false, keepOnFailure: false, ingress: false, positional: [], command: [] };
  let afterTerminator = false;
  for (const token of tokens) {
    if (token.kind === 'option-terminator') { afterTerminator = true; continue; }
    if (token.kind === 'positional') { (afterTerminator ? out.command : out.positional).push(token.value); continue; }
    if (!(allowed as readonly string[]).includes(token.name)) throw new CliError(`lab: unknown option ${token.rawName}\n\n${USAGE}`, 2);
    const name = token.name as OptionName;
    const value = token.value;
    if (OPTIONS[name].type === 'string' && value === undefined) throw new CliError(`lab: ${token.rawName} needs a value`, 2);
    switch (name) {
      case 'name': out.name = value; break;
      case 'dataplane':
        if (!(DATAPLANES as readonly (string | undefined)[]).includes(value)) throw new CliError(`lab: --dataplane must be one of ${DATAPLANES.join(', ')}`, 2);
        out.dataplane = value as Dataplane;
        break;
      case 'proxy-mode':
        if (!(PROXY_MODES as readonly (string | undefined)[]).includes(value)) throw new CliError(`lab: --proxy-mode must be one of ${PROXY_MODES.join(', ')}`, 2);
        out.proxyMode = value as ProxyMode;
        break;
      case 'ip-family':
        if (!(IP_FAMILIES as readonly (string | undefined)[]).includes(value)) throw new CliError(`lab: --ip-family must be one of ${IP_FAMILIES.join(', ')}`, 2);
        out.ipFamily = value as IpFamily;
        break;
      case 'underlay':
        if (!(UNDERLAY_FAMILIES as readonly (string | undefined)[]).includes(value)) throw new CliError(`lab: --underlay must be one of ${UNDERLAY_FAMILIES.join(', ')}`, 2);
        out.underlay = value as UnderlayFamily;
        break;
      case 'source':
        if (!(OBJECT_STORES as readonly (string | undefined)[]).includes(value)) throw new CliError(`lab: --source must be one of ${OBJECT_STORES.join(', ')}`, 2);
        out.source = value as ObjectStore;
        break;
      case 'filename': out.file = value; break;
      case 'json': out.json = true; break;
      case 'keep-on-failure': out.keepOnFailure = true; break;
      case 'ingress': out.ingress = true; break;
    }
  }
  return out;
}

function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

async function up(args: string[]): Promise<number> {
  const o = parseOptions(args, ['name', 'dataplane', 'proxy-mode', 'ip-family', 'underlay', 'source', 'json', 'keep-on-failure', 'ingress']);
  if (o.positional.length > 1) throw new CliError(`lab up: one topology file at most\n\n${USAGE}`, 2);
  const state = await labUp({ topologyPath: o.positional[0], name: o.name, dataplane: o.dataplane, proxyMode: o.proxyMode, ipFamily: o.ipFamily, underlay: o.underlay, source: o.source, ingress: o.ingress, keepOnFailure: o.keepOnFailure, progress });
  const status = await labStatus(state);
  console.log(o.json ? JSON.stringify(status, null, 2) : formatStatus(status));
  return 0;
}

async function status(args: string[]): Promise<number> {
  const o = parseOptions(args, ['name', 'json']);
  if (o.positional.length > 0) throw new CliError(`lab status: unexpected ${o.positional[0]}\n\n${USAGE}`, 2);
  const name = o.name ?? DEFAULT_LAB_NAME;
  checkLabName(name);
  const result = await labStatus(requireState(name));
  console.log(o.json ? JSON.stringify(result, null, 2) : formatStatus(result));
  return 0;
}

async function exec(args: string[]): Promise<number> {
  const o = parseOptions(args, ['name']);
  // "exec TARGET CMD…" without "--" also works; options then end at the target.
  const [target, ...rest] = o.positional;
  const command = o.command.length > 0 ? o.command : rest;
  if (target === undefined || command.length === 0 || (o.command.length > 0 && rest.length > 0)) {
    throw new CliError(`lab exec: need a target and a command after --\n\n${USAGE}`, 2);
  }
  const name = o.name ?? DEFAULT_LAB_NAME;
  checkLabName(name);
  const { netns, env } = resolveTarget(requireState(name), target);
  return execIn(netns, command, env);
}

/** `apply -f FILE` / `delete -f FILE` ("-" reads stdin, as kubectl does). */
async function manifestCommand(verb: 'apply' | 'delete', args: string[]): Promise<number> {
  const o = parseOptions(args, ['name', 'filename']);
  if (o.file === undefined || o.positional.length > 0) throw new CliError(`lab ${verb}: need -f FILE (and nothing else)\n\n${USAGE}`, 2);
  const name = o.name ?? DEFAULT_LAB_NAME;
  checkLabName(name);
  let source: ManifestSource;
  try {
    source = o.file === '-' ? { file: 'stdin', text: readFileSync(0, 'utf8') } : { file: basename(o.file), text: readFileSync(o.file, 'utf8') };
  } catch (err) {
    throw new CliError(`lab ${verb}: cannot read ${o.file}: ${(err as Error).message}`, 1);
  }
  const state = requireState(name);
  const result = await (verb === 'apply' ? labApply : labDelete)(state, source, (m) => progress(`lab ${name}: ${m}`));
  for (const line of result.lines) console.log(line);
  for (const warning of result.warnings) progress(`lab ${name}: warning: ${warning}`);
  return 0;
}

async function down(args: string[]): Promise<number> {
  const o = parseOptions(args, ['name']);
  if (o.positional.length > 0) throw new CliError(`lab down: unexpected ${o.positional[0]}\n\n${USAGE}`, 2);
  const name = o.name ?? DEFAULT_LAB_NAME;
  const summary = await labDown(name, (m) => progress(`lab ${name}: ${m}`));
  if (!summary.existed) progress(`lab ${name}: does not exist, nothing to remove`);
  else progress(`lab ${name}: removed (${summary.namespaces} namespaces, ${summary.processes} processes)`);
  return 0;
}

/** The lab API server's admin kubeconfig for the host, as `kind get kubeconfig` prints one. */
function kubeconfig(args: string[]): number {
  const o = parseOptions(args, ['name']);
  if (o.positional.length > 0) throw new CliError(`lab kubeconfig: unexpected ${o.positional[0]}\n\n${USAGE}`, 2);
  const name = o.name ?? DEFAULT_LAB_NAME;
  checkLabName(name);
  const state = requireState(name);
  if (state.apiServer === undefined) throw new CliError(`lab kubeconfig: lab "${name}" has no API server (made by an older tapir, or still starting)`, 1);
  process.stdout.write(readFileSync(state.apiServer.hostKubeconfig, 'utf8'));
  return 0;
}

function list(): number {
  for (const name of listLabs()) {
    let detail = '';
    try {
      const state = loadState(name);
      detail = state === undefined ? '(no state)' : `${state.dataplane} ${state.phase} ${state.nodes.length} nodes ${state.pods.length} pods`;
    } catch (err) {
      detail = `(${(err as Error).message})`;
    }
    console.log(`${name}  ${detail}`);
  }
  return 0;
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  // A LabError reaches the CLI's handler as it is: 'tapir: message (TAPIR_LAB_...)',
  // exit status 130 for INTERRUPTED (the shell's "ended by SIGINT"), 1 otherwise.
  switch (sub) {
    case 'up': return await up(rest);
    case 'status': return await status(rest);
    case 'exec': return await exec(rest);
    case 'apply': return await manifestCommand('apply', rest);
    case 'delete': return await manifestCommand('delete', rest);
    case 'down': return await down(rest);
    case 'list': case 'ls': return list();
    case 'apiserver': return await (await import('./lab-apiserver.ts')).run(rest);
    case 'kubeconfig': return kubeconfig(rest);
    case undefined: case '--help': case '-h': case 'help':
      console.log(USAGE);
      return sub === undefined ? 2 : 0;
    default:
      throw new CliError(`lab: unknown subcommand '${sub}'\n\n${USAGE}`, 2);
  }
}

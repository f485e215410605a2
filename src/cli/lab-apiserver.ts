// `tapir lab apiserver`: runs the lab's Kubernetes API server (a test double, see
// docs/lab-apiserver.md) in the foreground. The lab starts it; it is a command of its
// own so that the lab can run it in its namespace and tests can run it alone.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, parsePortRange, parseServiceCidrs } from '../model/cluster-defaults.ts';
import { runApiServer } from '../lab/apiserver/main.ts';
import type { Listener } from '../lab/apiserver/server.ts';
import { CliError } from './errors.ts';

const USAGE = `Usage:
  tapir lab apiserver --dir DIR [--token-file FILE] [--listen HOST:PORT]... [--listen-fd FD]...
                      [--service-cidr CIDR[,CIDR6]] [--node-port-range MIN-MAX] [--bootstrap FILE]...
                      [--cert-name NAME]... [--bookmark-interval SECONDS] [--advertise-address IP:PORT]
                      [--controllers]

Serves the Kubernetes API subset of the lab over HTTPS until SIGTERM. DIR holds the journal
(journal.jsonl, replayed on start) and tls/ (CA and serving certificate, made on first start).
--token-file: kube-apiserver's token file format (token,user,uid,"groups"), default DIR/tokens.csv.
--listen-fd: a listening socket inherited from the parent (e.g. 127.0.0.1 of the host).
--bootstrap: YAML files whose objects are created when absent (deploy/kubernetes/rbac.yaml).
--controllers: also run the EndpointSlice controller and a scheduler (what the lab needs of
  kube-controller-manager and kube-scheduler).
--advertise-address: where pods reach the server; the \`kubernetes\` Service's endpoints point there.
When listening, prints one JSON line: {"listening":[{"address":...,"port":...}]}.`;

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        dir: { type: 'string' },
        'token-file': { type: 'string' },
        listen: { type: 'string', multiple: true },
        'listen-fd': { type: 'string', multiple: true },
        'service-cidr': { type: 'string' },
        'node-port-range': { type: 'string' },
        bootstrap: { type: 'string', multiple: true },
        'cert-name': { type: 'string', multiple: true },
        'bookmark-interval': { type: 'string' },
        'advertise-address': { type: 'string' },
        controllers: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    throw new CliError(`lab apiserver: ${(err as Error).message}\n\n${USAGE}`, 2);
  }
  if (parsed.help === true) { console.log(USAGE); return 0; }
  if (parsed.dir === undefined) throw new CliError(`lab apiserver: --dir is required\n\n${USAGE}`, 2);
  const listeners: Listener[] = [];
  for (const l of parsed.listen ?? []) {
    const m = /^(.+):(\d{1,5})$/.exec(l);
    if (m === null) throw new CliError(`lab apiserver: --listen ${l}: expected HOST:PORT`, 2);
    listeners.push({ host: m[1]!, port: Number(m[2]) });
  }
  for (const fd of parsed['listen-fd'] ?? []) {
    if (!/^\d+$/.test(fd)) throw new CliError(`lab apiserver: --listen-fd ${fd}: expected a file descriptor number`, 2);
    listeners.push({ fd: Number(fd) });
  }
  if (listeners.length === 0) throw new CliError('lab apiserver: give at least one --listen or --listen-fd', 2);
  // kube-apiserver's --service-cluster-ip-range: one CIDR, or two of different families (primary first).
  const serviceCIDRs = parseServiceCidrs(parsed['service-cidr'] ?? DEFAULT_SERVICE_CIDR);
  if (typeof serviceCIDRs === 'string') throw new CliError(`lab apiserver: --service-cidr ${serviceCIDRs}: expected a network such as 10.96.0.0/12, or two such as 10.96.0.0/12,fd00:10:96::/112`, 2);
  const nodePortRange = parsed['node-port-range'] === undefined ? DEFAULT_NODE_PORT_RANGE : parsePortRange(parsed['node-port-range']);
  if (nodePortRange === undefined) throw new CliError(`lab apiserver: --node-port-range ${parsed['node-port-range']}: expected MIN-MAX such as 30000-32767`, 2);
  const bookmark = Number(parsed['bookmark-interval'] ?? '10');
  if (!(bookmark > 0)) throw new CliError('lab apiserver: --bookmark-interval must be a positive number of seconds', 2);
  let advertise: { address: string; port: number } | undefined;
  if (parsed['advertise-address'] !== undefined) {
    const m = /^(\d+\.\d+\.\d+\.\d+):(\d{1,5})$/.exec(parsed['advertise-address']);
    if (m === null) throw new CliError(`lab apiserver: --advertise-address ${parsed['advertise-address']}: expected IPv4:PORT`, 2);
    advertise = { address: m[1]!, port: Number(m[2]) };
  }
  return await runApiServer({
    dir: parsed.dir,
    tokenFile: parsed['token-file'] ?? join(parsed.dir, 'tokens.csv'),
    serviceCIDRs,
    nodePortRange,
    listeners,
    certificateNames: parsed['cert-name'] ?? [],
    bootstrapFiles: parsed.bootstrap ?? [],
    bookmarkIntervalMs: bookmark * 1000,
    advertise,
    controllers: parsed.controllers === true,
  }, (addresses) => {
    console.log(JSON.stringify({ listening: addresses.map((a) => ({ address: a.address, port: a.port })) }));
  });
}

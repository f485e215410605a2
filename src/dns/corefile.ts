// CoreDNS's Corefile, the subset Tapir serves (docs/dns.md): reads a Corefile into a
// CorefileConfig (corefile-config.ts). The text is tokenized and split into server blocks
// (corefile-syntax.ts), each block key read as a zone and port (corefile-addresses.ts),
// and each block's plugins read and checked (corefile-plugins.ts); here keys with
// different ports become one server each, as CoreDNS makes one server per port, and a
// zone defined twice on a port is an error. Also kubeadm's default Corefile, the
// built-in configuration.
//
// kubeadm's default Corefile keeps its meaning. A plugin or an option Tapir does not
// implement is an error that names it with its file and line, never silently dropped: a
// cluster's `coredns` ConfigMap that asks for `rewrite` must not load as if it did not.
// Every problem of the file is reported at once.
import { readFileSync } from 'node:fs';
import { TapirError } from '../errors/tapir-error.ts';
import { parseResolvConf } from './resolv-conf.ts';
import { parseKey } from './corefile-addresses.ts';
import type { CorefileConfig, ServerBlockConfig } from './corefile-config.ts';
import { readServerBlock } from './corefile-plugins.ts';
import { parseBlocks, tokenize } from './corefile-syntax.ts';

/** The Corefile could not be read or asks for something Tapir does not do; `problems` lists every one, "file:line: what". */
export class CorefileError extends TapirError {
  readonly code = 'DNS_COREFILE';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

/**
 * kubeadm's default Corefile (cmd/kubeadm/app/phases/addons/dns/manifests.go,
 * CoreDNSConfigMap) for the zone `cluster.local`: the built-in configuration when none is given.
 */
export function kubeadmCorefile(clusterDomain = 'cluster.local'): string {
  return `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes ${clusterDomain} in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success ${clusterDomain}
       disable denial ${clusterDomain}
    }
    loop
    reload
    loadbalance
}
`;
}

/** Reads and checks a Corefile; throws CorefileError with every problem. */
export function readCorefile(path: string, env: NodeJS.ProcessEnv = process.env): CorefileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CorefileError([`${path}: cannot read the Corefile: ${(err as Error).message}`]);
  }
  return parseCorefile(text, path, env);
}

/**
 * Parses a Corefile's text. `file` names it in messages; `env` fills `{$VAR}`;
 * `readResolvConf` reads the nameservers of a `forward . /etc/resolv.conf` (defaults to the file's).
 */
export function parseCorefile(
  text: string,
  file = 'Corefile',
  env: NodeJS.ProcessEnv = process.env,
  readResolvConf: (path: string) => string[] = nameserversOf,
): CorefileConfig {
  const problems: string[] = [];
  const at = (line: number, message: string): void => { problems.push(`${file}:${line}: ${message}`); };
  const tokens = tokenize(text, env, at);
  const blocks = parseBlocks(tokens, at);
  const servers: ServerBlockConfig[] = [];
  const seen = new Map<string, number>();
  for (const block of blocks) {
    const keys = block.keys.map((k) => parseKey(k, at)).filter((k) => k !== null);
    if (keys.length === 0) continue;
    // Keys with different ports are one block each, as CoreDNS makes one server per port.
    const ports = [...new Set(keys.map((k) => k.port))];
    for (const port of ports) {
      const zones = keys.filter((k) => k.port === port).map((k) => k.zone);
      for (const zone of zones) {
        const id = `${zone}:${port}`;
        const first = seen.get(id);
        if (first !== undefined) at(block.line, `zone "${zone === '' ? '.' : zone}" on port ${port} is defined twice (also line ${first})`);
        else seen.set(id, block.line);
      }
      servers.push(readServerBlock(zones, port, block.line, block.directives, at, readResolvConf));
    }
  }
  if (problems.length === 0 && servers.length === 0) problems.push(`${file}: no server block: write at least one, such as ".:53 { forward . /etc/resolv.conf }"`);
  if (problems.length > 0) throw new CorefileError(problems);
  return { file, servers };
}

/** The `nameserver` lines of a resolv.conf (resolv-conf.ts reads it as the lab and kubelet do). */
function nameserversOf(path: string): string[] {
  return parseResolvConf(readFileSync(path, 'utf8')).nameservers;
}

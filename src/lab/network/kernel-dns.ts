// Cluster DNS under the kernel data plane. No agent runs there, so each node runs
// `tapir dns` beside the kernel proxy, as a cluster runs CoreDNS beside kube-proxy:
// kubeadm's Corefile, bound to the node's own address, which is what the kube-dns
// Service's EndpointSlice names (lab-objects.ts kubeDnsObjects); a pod's query to the
// cluster DNS address is DNATed there by the iptables or nftables rules. The same
// server the agents embed, so the proxy modes are compared with the same DNS answers.
// The processes live in the nodes' namespaces: `lab down` stops them with the rest.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { kubeadmCorefile } from '../../dns/corefile.ts';
import { isIpv6Only, usesApi, type LabState } from '../state.ts';
import { LabError } from '../validate.ts';
import { isAlive, logTail, spawnDetached } from './processes.ts';
import { interruptibleSleep } from './shell.ts';

/** This checkout's `tapir` (TAPIR_LAB_TAPIR_BIN stands in for the agent only). */
const TAPIR = fileURLToPath(new URL('../../../bin/tapir', import.meta.url));
const READY_TIMEOUT_MS = 30_000;

export async function startKernelDns(state: LabState, progress: (message: string) => void): Promise<void> {
  const dir = join(state.stateDir, 'dns');
  mkdirSync(dir, { recursive: true });
  const corefile = join(dir, 'Corefile');
  writeFileSync(corefile, kubeadmCorefile());
  const source = usesApi(state) ? ['--kubeconfig', state.apiServer.labKubeconfig] : ['--manifests', state.manifests];
  const started = state.nodes.map((node) => {
    const log = join(dir, `tapir-dns-${node.name}.log`);
    // An IPv6-only lab's kube-dns endpoints are the nodes' IPv6 addresses (its IPv6 proxier DNATs fd00:10:96::a there).
    const bind6 = isIpv6Only(state) && node.underlayIP6 !== undefined ? ['--bind', node.underlayIP6] : [];
    const pid = spawnDetached(node.netns, [TAPIR, 'dns', '--corefile', corefile, '--node', node.name, '--bind', node.underlayIP, ...bind6, ...source], log);
    return { node: node.name, pid, log };
  });
  progress(`cluster DNS: tapir dns on every node's address (kube-dns's endpoints), ${corefile}`);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (const s of started) {
    while (!readLog(s.log).includes('tapir dns: serving')) {
      if (!isAlive(s.pid)) throw new LabError('DNS_FAILED', `tapir dns on ${s.node} exited (log ${s.log}):\n${logTail(s.log)}`);
      if (Date.now() > deadline) throw new LabError('DNS_FAILED', `tapir dns on ${s.node} is not serving after ${READY_TIMEOUT_MS / 1000} s (log ${s.log}):\n${logTail(s.log)}`);
      await interruptibleSleep(100);
    }
  }
}

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

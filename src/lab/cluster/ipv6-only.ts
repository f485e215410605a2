// A topology's Services in an IPv6-only lab (`tapir lab up --ip-family ipv6`, kind's
// `ipFamily: ipv6`). Services without ipFamilies get the cluster's one family, IPv6, from
// the API server; only addresses a topology wrote down need a counterpart. An IPv4
// address in the lab's own ranges becomes the address with the same host number in the
// IPv6 range of the same role, as the IPv6 load-balancer pool is the IPv4 pool's host
// numbers in the IPv6 underlay (plan.ts): the default topology's `web` at 10.96.0.100
// gets fd00:10:96::64, its external IP 172.30.0.150 fd00:172:30::96. So one topology
// file serves every family, and an address outside those ranges stays as written (the
// API server then says what is wrong with it).
import { parseAllDocuments, isMap, isSeq, isScalar, type Document } from 'yaml';
import { ipv6ToString, parseCidr, parseCidr6, parseIpv4, type Cidr, type Cidr6 } from '../../wire/address.ts';
import type { LabState } from '../state.ts';
import type { ManifestSource } from './topology-manifests.ts';

/** Pairs of (IPv4 range, IPv6 range of the same role). */
type RangePairs = [Cidr, Cidr6][];

function rangePairs(state: LabState): RangePairs {
  const a = state.addressing;
  const pairs: RangePairs = [];
  const pair = (v4: string, v6: string | undefined): void => {
    const c4 = parseCidr(v4, true);
    const c6 = v6 === undefined ? undefined : parseCidr6(v6, true);
    if (c4 !== undefined && c6 !== undefined) pairs.push([c4, c6]);
  };
  pair(a.serviceCIDR, a.serviceCIDRv6);
  pair(a.underlayCIDR, a.underlayCIDRv6);
  return pairs;
}

/** The IPv6 counterpart of an IPv4 address in one of the lab's ranges; the text itself otherwise. */
export function ipv6Counterpart(state: LabState, text: string): string {
  const address = parseIpv4(text);
  if (address === undefined) return text;
  for (const [c4, c6] of rangePairs(state)) {
    const host = (address - c4.network) >>> 0;
    if (c4.contains(address) && host < 2 ** (128 - c6.prefixLength)) return ipv6ToString(c6.host(host));
  }
  return text;
}

/** The topology's Services with their IPv4 cluster, external and load-balancer IPs moved to IPv6; comments and layout kept. */
export function ipv6OnlyServices(source: ManifestSource, state: LabState): ManifestSource {
  const documents = parseAllDocuments(source.text);
  // A document that does not parse is left for the apply to report, with its position.
  if (!Array.isArray(documents) || documents.some((d) => d.errors.length > 0)) return source;
  let changed = false;
  const rewrite = (doc: Document.Parsed, path: string[]): void => {
    const node = doc.getIn(path, true);
    if (isScalar(node) && typeof node.value === 'string') {
      const next = ipv6Counterpart(state, node.value);
      if (next !== node.value) {
        node.value = next;
        changed = true;
      }
    } else if (isSeq(node)) {
      for (let i = 0; i < node.items.length; i++) rewrite(doc, [...path, String(i)]);
    }
  };
  for (const doc of documents) {
    if (!isMap(doc.contents) || doc.get('kind') !== 'Service') continue;
    for (const field of ['clusterIP', 'clusterIPs', 'externalIPs', 'loadBalancerIP']) rewrite(doc, ['spec', field]);
  }
  return changed ? { file: source.file, text: documents.map((d) => d.toString({ lineWidth: 0 })).join('') } : source;
}

// A Service's ipFamilies and ipFamilyPolicy as kube-apiserver settles them against the
// cluster's service CIDRs (pkg/registry/core/service/storage/alloc.go,
// initIPFamilyFields), shared by the lab API server, which writes the result into the
// object, and the manifest mode's allocator, which has nobody to write it back to. The
// object is already structurally valid (validate-service.ts: families and addresses
// well-formed, at most one per family, clusterIPs matching ipFamilies by index); what
// is left depends on the cluster:
//   - ExternalName: no families, no policy (wiped, as the registry does).
//   - Requested clusterIPs beyond ipFamilies add their own family, which the cluster
//     must have ("IPv6 is not configured on this cluster").
//   - No policy: RequireDualStack for two families, and for a headless Service without
//     a selector (its endpoints are written by hand and may carry either family, so it
//     gets both even on a single-stack cluster); else SingleStack.
//   - RequireDualStack on a single-stack cluster is an error (except headless without
//     a selector, as above); every family must be the cluster's.
//   - No families: the cluster's primary one; a policy other than SingleStack adds the
//     cluster's other family when it has two.
//   - SingleStack with two families or two addresses is an error.
import type { IpFamily, IpFamilyPolicy, ServiceType } from './objects.ts';

export interface FamilyRequest {
  type: ServiceType;
  /** clusterIP None. */
  headless: boolean;
  hasSelector: boolean;
  /** The requested addresses (not None), in order; their families were checked against ipFamilies. */
  clusterIPs: readonly string[];
  ipFamilies: readonly IpFamily[];
  ipFamilyPolicy: '' | IpFamilyPolicy;
}

export interface FamilyProblem {
  /** "spec.ipFamilyPolicy", "spec.ipFamilies[1]", "spec.clusterIPs[1]". */
  field: string;
  message: string;
}

export interface FamilyDecision {
  /** [] for ExternalName. */
  ipFamilies: IpFamily[];
  /** '' for ExternalName. */
  ipFamilyPolicy: '' | IpFamilyPolicy;
  /** Empty when the Service fits the cluster. */
  problems: FamilyProblem[];
}

export function otherFamily(family: IpFamily): IpFamily {
  return family === 'IPv4' ? 'IPv6' : 'IPv4';
}

/** The family of a valid address in text (validated input: no IPv4-mapped forms). */
export function familyOfValid(ip: string): IpFamily {
  return ip.includes(':') ? 'IPv6' : 'IPv4';
}

/**
 * `clusterFamilies`: the families of the cluster's service CIDRs, primary first (one or
 * two, different). Pure: the same request on the same cluster settles the same way.
 */
export function resolveIpFamilies(req: FamilyRequest, clusterFamilies: readonly IpFamily[]): FamilyDecision {
  if (req.type === 'ExternalName') return { ipFamilies: [], ipFamilyPolicy: '', problems: [] };
  const problems: FamilyProblem[] = [];
  const families = [...req.ipFamilies];
  const dualCluster = clusterFamilies.length > 1;
  const primary = clusterFamilies[0] ?? 'IPv4';
  req.clusterIPs.forEach((ip, i) => {
    if (i < families.length) return;
    const family = familyOfValid(ip);
    if (!clusterFamilies.includes(family)) problems.push({ field: `spec.clusterIPs[${i}]`, message: `${JSON.stringify(ip)}: ${family} is not configured on this cluster` });
    else families.push(family);
  });
  if (problems.length > 0) return { ipFamilies: families, ipFamilyPolicy: req.ipFamilyPolicy, problems };

  let policy = req.ipFamilyPolicy;
  if (policy === '' && families.length === 2) policy = 'RequireDualStack';
  if (req.headless && !req.hasSelector) {
    if (policy === '') policy = 'RequireDualStack';
    if (families.length === 0) families.push(primary);
    if (families.length === 1 && policy !== 'SingleStack') families.push(otherFamily(families[0]!));
    if (policy === 'SingleStack' && families.length > 1) problems.push(singleStackProblem('families'));
    return { ipFamilies: families, ipFamilyPolicy: policy, problems };
  }
  if (policy === '') policy = 'SingleStack';
  if (policy === 'RequireDualStack' && !dualCluster) {
    problems.push({ field: 'spec.ipFamilyPolicy', message: `"RequireDualStack": this cluster is not configured for dual-stack services (its service CIDR is ${primary} only)` });
  }
  families.forEach((family, i) => {
    if (!clusterFamilies.includes(family)) problems.push({ field: `spec.ipFamilies[${i}]`, message: `"${family}": not configured on this cluster` });
  });
  if (policy === 'SingleStack') {
    if (req.clusterIPs.length > 1) problems.push(singleStackProblem('addresses'));
    else if (families.length > 1) problems.push(singleStackProblem('families'));
  }
  if (problems.length > 0) return { ipFamilies: families, ipFamilyPolicy: policy, problems };
  if (families.length === 0) families.push(primary);
  if (families.length === 1 && policy !== 'SingleStack' && dualCluster) families.push(otherFamily(families[0]!));
  return { ipFamilies: families, ipFamilyPolicy: policy, problems };
}

function singleStackProblem(what: 'addresses' | 'families'): FamilyProblem {
  return { field: 'spec.ipFamilyPolicy', message: `"SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP ${what} are specified` };
}

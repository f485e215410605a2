// Endpoints (v1) to EndpointSlices, as the EndpointSlice mirroring controller does it:
// one slice per subset and address family (the IPv4 one first, named -mirror-<i> as
// before, the IPv6 one -mirror-<i>-ipv6), addresses ready, notReadyAddresses not
// ready, the subset's ports.
// The controller mirrors only Endpoints of Services without a selector (the caller
// checks that) and skips objects labelled endpointslice.kubernetes.io/skip-mirror=true.
import { ipFamilyOf } from './fields.ts';
import { Label, type IpFamily, type EndpointAddress, type EndpointSliceObject, type EndpointsObject, type SliceEndpoint } from './objects.ts';

export function mirrorEndpoints(endpoints: EndpointsObject): EndpointSliceObject[] {
  if (endpoints.metadata.labels[Label.SKIP_MIRROR] === 'true') return [];
  const toEndpoint = (a: EndpointAddress, ready: boolean): SliceEndpoint => ({
    address: a.ip,
    ready,
    // The mirroring controller sets only `ready`; kube-proxy would then read serving as
    // true. We say serving = ready so status shows what the Endpoints object said; the
    // routing rules only look at serving together with terminating, which is false here.
    serving: ready,
    terminating: false,
    hostname: a.hostname,
    nodeName: a.nodeName,
    zone: '',
    forZones: [],
    forNodes: [],
  });
  const of = (family: IpFamily) => (a: EndpointAddress): boolean => ipFamilyOf(a.ip) === family;
  return endpoints.subsets.flatMap((subset, i) => (['IPv4', 'IPv6'] as const).map((family): EndpointSliceObject => ({
    kind: 'EndpointSlice',
    origin: endpoints.origin,
    metadata: {
      name: `${endpoints.metadata.name}-mirror-${i}${family === 'IPv6' ? '-ipv6' : ''}`,
      namespace: endpoints.metadata.namespace,
      labels: { [Label.SERVICE_NAME]: endpoints.metadata.name },
      annotations: {},
      deletionTimestamp: '',
      resourceVersion: '',
    },
    serviceName: endpoints.metadata.name,
    addressType: family,
    endpoints: [...subset.addresses.filter(of(family)).map((a) => toEndpoint(a, true)), ...subset.notReadyAddresses.filter(of(family)).map((a) => toEndpoint(a, false))],
    ports: subset.ports,
  })).filter((slice) => slice.addressType === 'IPv4' || slice.endpoints.length > 0));
}

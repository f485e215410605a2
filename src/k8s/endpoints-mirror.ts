// Endpoints (v1) to EndpointSlices, as the EndpointSlice mirroring controller does it:
// one slice per subset, addresses ready, notReadyAddresses not ready, the subset's ports.
// The controller mirrors only Endpoints of Services without a selector (the caller
// checks that) and skips objects labelled endpointslice.kubernetes.io/skip-mirror=true.
import { Label, type EndpointAddress, type EndpointSliceObject, type EndpointsObject, type SliceEndpoint } from './objects.ts';

export function mirrorEndpoints(endpoints: EndpointsObject): EndpointSliceObject[] {
  if (endpoints.metadata.labels[Label.SKIP_MIRROR] === 'true') return [];
  const toEndpoint = (a: EndpointAddress, ready: boolean): SliceEndpoint => ({
    addresses: [a.ip],
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
  return endpoints.subsets.map((subset, i) => ({
    kind: 'EndpointSlice',
    origin: endpoints.origin,
    metadata: {
      name: `${endpoints.metadata.name}-mirror-${i}`,
      namespace: endpoints.metadata.namespace,
      labels: { [Label.SERVICE_NAME]: endpoints.metadata.name },
      annotations: {},
      deletionTimestamp: '',
      resourceVersion: '',
    },
    serviceName: endpoints.metadata.name,
    addressType: 'IPv4',
    endpoints: [...subset.addresses.map((a) => toEndpoint(a, true)), ...subset.notReadyAddresses.map((a) => toEndpoint(a, false))],
    ports: subset.ports,
  }));
}

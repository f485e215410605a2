// Who a workload is: given by the lab on the command line, reported in every HTTP reply.
export interface PodIdentity {
  pod: string;
  namespace: string;
  node: string;
}

// IPv6 Services in a dual-stack lab on the kernel dataplane with kube-proxy's iptables mode
// (its IPv6 proxier): the shared suite in test/helpers/lab-services6.ts.
import { services6Suite } from './helpers/lab-services6.ts';

services6Suite('l6i', 'iptables');

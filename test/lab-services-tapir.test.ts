// Services in the lab with the Tapir dataplane and proxy mode: the same suite as the
// kernel proxy modes (test/helpers/lab-services.ts), served by the agents from the lab's
// manifest directory (agent.yaml: manifests, zone, nodePortAddresses). Never skipped:
// a skip that hangs on the source text could switch the suite off with CI green.
import { downSuite, serviceSuite } from './helpers/lab-services.ts';

const lab = serviceSuite('lst', ['--dataplane', 'tapir', '--proxy-mode', 'tapir']);
downSuite(lab);

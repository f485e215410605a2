// Services in the lab with the Tapir dataplane and proxy mode: the same suite as the
// kernel proxy modes (test/helpers/lab-services.ts), served by the agents from the lab's
// manifest directory (agent.yaml: manifests, zone, nodePortAddresses). Skipped until
// the agent integrates the service proxy, i.e. src/agent/agent.ts imports src/services.
import { readFileSync } from 'node:fs';
import { downSuite, serviceSuite } from './helpers/lab-services.ts';

const agentSource = readFileSync(new URL('../src/agent/agent.ts', import.meta.url), 'utf8');
const skip = /from ['"]\.\.\/services\//.test(agentSource)
  ? undefined
  : 'the agent does not proxy Services yet (src/agent/agent.ts does not import src/services)';

const lab = serviceSuite('lst', ['--dataplane', 'tapir', '--proxy-mode', 'tapir'], { skip });
downSuite(lab, skip);

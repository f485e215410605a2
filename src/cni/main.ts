// tapir-cni: the CNI plugin (spec 1.1.0) a container runtime execs with CNI_* variables
// and the network configuration on stdin. Success: exit 0, the Result on stdout for ADD,
// nothing for the other commands. Failure: exit 1 and {cniVersion, code, msg, details}
// on stdout. Logs go to stderr, which runtimes keep for the operator.
import { Invocation, cmdAdd, cmdCheck, cmdDel, cmdGc, cmdStatus } from './commands.ts';
import { LATEST_VERSION, SUPPORTED_VERSIONS, parseNetConf } from './config.ts';
import { readCommand, readEnv } from './env.ts';
import { CniCode, CniError } from './errors.ts';

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    process.stdin.on('data', (c: Buffer) => chunks.push(c));
    process.stdin.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.once('error', (err) => reject(new CniError(CniCode.io, 'failed to read the network configuration from stdin', err.message)));
  });
}

/** The cniVersion to print an error with: the configuration's if we support it. */
function versionOf(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    if (typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v)) return v;
  } catch { /* not JSON: the error says so */ }
  return LATEST_VERSION;
}

async function main(): Promise<number> {
  let stdin = '';
  let command = '';
  const log = (line: string): void => { process.stderr.write(`tapir-cni ${command}: ${line}\n`); };
  try {
    command = readCommand(process.env);
    if (command === 'VERSION') {
      process.stdout.write(`${JSON.stringify({ cniVersion: LATEST_VERSION, supportedVersions: SUPPORTED_VERSIONS })}\n`);
      return 0;
    }
    const env = readEnv(process.env);
    stdin = await readStdin();
    const conf = parseNetConf(stdin, command);
    const inv = new Invocation(conf, env, log);
    switch (env.command) {
      case 'ADD':
        process.stdout.write(`${JSON.stringify(await cmdAdd(inv))}\n`);
        break;
      case 'DEL': await cmdDel(inv); break;
      case 'CHECK': await cmdCheck(inv); break;
      case 'GC': await cmdGc(inv); break;
      case 'STATUS': await cmdStatus(inv); break;
    }
    return 0;
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CniCode.internal, (err as Error).message ?? String(err), (err as Error).stack ?? '');
    const body: Record<string, unknown> = { cniVersion: versionOf(stdin), code: e.cniCode, msg: e.message };
    if (e.details !== '') body.details = e.details;
    process.stdout.write(`${JSON.stringify(body)}\n`);
    log(`error ${e.cniCode}: ${e.message}${e.details !== '' ? ` (${e.details})` : ''}`);
    return 1;
  }
}

main().then((code) => { process.exitCode = code; });

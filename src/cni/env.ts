// The CNI_* environment a runtime passes (CNI spec, "Parameters"), checked per command.
// Which variables each command requires follows the spec and libcni's skel:
// ADD and CHECK need everything; DEL may come without CNI_NETNS (the namespace can be
// gone already); GC needs CNI_PATH only; STATUS and VERSION need nothing but the command.
import { isValidContainerId, isValidIfName } from '../agent/protocol.ts';
import { CniCode, CniError } from './errors.ts';

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

export interface CniEnv {
  command: CniCommand;
  containerId: string;
  /** '' when absent (allowed for DEL). */
  netns: string;
  ifName: string;
  /** CNI_ARGS as key/value pairs, e.g. K8S_POD_NAME. */
  args: Map<string, string>;
  /** CNI_PATH split on ':'; empty entries dropped. */
  path: string[];
}

type Need = 'required' | 'optional';
const NEEDS: Record<CniCommand, { containerId: Need; netns: Need; ifName: Need; path: Need }> = {
  ADD: { containerId: 'required', netns: 'required', ifName: 'required', path: 'required' },
  CHECK: { containerId: 'required', netns: 'required', ifName: 'required', path: 'required' },
  DEL: { containerId: 'required', netns: 'optional', ifName: 'required', path: 'required' },
  GC: { containerId: 'optional', netns: 'optional', ifName: 'optional', path: 'required' },
  STATUS: { containerId: 'optional', netns: 'optional', ifName: 'optional', path: 'optional' },
  VERSION: { containerId: 'optional', netns: 'optional', ifName: 'optional', path: 'optional' },
};

export function readCommand(env: NodeJS.ProcessEnv): CniCommand {
  const command = env.CNI_COMMAND ?? '';
  if (command === '') throw new CniError(CniCode.invalidEnv, 'CNI_COMMAND is not set', `set CNI_COMMAND to one of ${CNI_COMMANDS.join(', ')}`);
  if (!(CNI_COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(CniCode.invalidEnv, `CNI_COMMAND '${command}' is not a CNI command`, `CNI_COMMAND must be one of ${CNI_COMMANDS.join(', ')}`);
  }
  return command as CniCommand;
}

/** Reads and validates the variables; all problems are reported together, by name. */
export function readEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = readCommand(env);
  const need = NEEDS[command];
  const problems: string[] = [];
  const get = (name: string, n: Need): string => {
    const v = env[name] ?? '';
    if (v === '' && n === 'required') problems.push(`${name} is required for ${command} but not set`);
    return v;
  };
  const containerId = get('CNI_CONTAINERID', need.containerId);
  const netns = get('CNI_NETNS', need.netns);
  const ifName = get('CNI_IFNAME', need.ifName);
  const pathText = get('CNI_PATH', need.path);
  if (containerId !== '' && !isValidContainerId(containerId)) {
    problems.push(`CNI_CONTAINERID '${containerId}' must start with a letter or digit followed by letters, digits, '_', '.' or '-'`);
  }
  if (ifName !== '' && !isValidIfName(ifName)) {
    problems.push(`CNI_IFNAME '${ifName}' is not a valid interface name (1-15 bytes, not '.' or '..', no '/', ':' or whitespace)`);
  }
  if (netns !== '' && !netns.startsWith('/')) problems.push(`CNI_NETNS '${netns}' must be an absolute path to a network namespace`);
  const args = new Map<string, string>();
  const argsText = env.CNI_ARGS ?? '';
  if (argsText !== '') {
    for (const pair of argsText.split(';')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      if (eq <= 0) problems.push(`CNI_ARGS entry '${pair}' is not KEY=VALUE (entries are separated by ';')`);
      else args.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
  }
  if (problems.length > 0) {
    const names = [...new Set(problems.map((p) => p.split(' ')[0]))].join(', ');
    throw new CniError(CniCode.invalidEnv, `invalid environment variables: ${names}`, problems.join('; '));
  }
  return { command, containerId, netns, ifName, args, path: pathText.split(':').filter((p) => p !== '') };
}

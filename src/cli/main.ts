// `tapir`: the single command-line entry. Each subcommand lives in its own module and
// is loaded only when called, so `tapir --help` never loads the native addon.
import { readFileSync } from 'node:fs';
import { commands } from './commands.ts';
import { TapirError } from '../errors/tapir-error.ts';

const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'tapir: a Kubernetes node data plane in TypeScript',
    '',
    'Usage: tapir <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Options:',
    '  --help, -h     show this help (also: tapir <command> --help)',
    '  --version, -V  print the version',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    console.log(usage());
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === '-V' || first === 'version') {
    console.log(`tapir ${packageJson.version} (node ${process.versions.node})`);
    return 0;
  }
  const command = commands.find((c) => c.name === first);
  if (command === undefined) {
    console.error(`tapir: unknown command '${first}'\n\n${usage()}`);
    return 2;
  }
  const module = await command.load();
  return module.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (err instanceof TapirError) {
      // A condition Tapir knows already says what went wrong and where; a stack trace
      // would bury it. The code goes on the first line, after the message.
      const nl = err.message.indexOf('\n');
      const [first, rest] = nl < 0 ? [err.message, ''] : [err.message.slice(0, nl), err.message.slice(nl)];
      console.error(`tapir: ${first} (${err.code})${rest}`);
      process.exitCode = err.exitCode;
    } else {
      console.error(err);
      process.exitCode = 1;
    }
  },
);

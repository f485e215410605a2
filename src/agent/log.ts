// The agent's log: pino, one JSON object per line and event on stderr (what a
// DaemonSet's log collector wants), or one plain line per event for people (the lab's
// log files, a terminal). Verbosity is klog's -v, which kube-proxy's flags and its
// config's logging.verbosity use: 0 the default (info and worse), 2 more detail, 4
// debug, 6 and up everything. pino levels: info 30, "verbose" 25 (klog V(2)), debug 20
// (V(4)), trace 10 (V(6)).
import { pino, stdTimeFunctions, type DestinationStream, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger<'verbose'>;

export type LogFormat = 'json' | 'text';

export interface LogOptions {
  /** klog's -v: 0, 2, 4, 6... */
  verbosity: number;
  format: LogFormat;
  /** Fields on every line (node: the node's name). */
  base?: Record<string, string>;
  /** Where lines go; default stderr. */
  destination?: DestinationStream;
}

const LEVELS = { verbose: 25 };

/** pino's level for klog verbosity `v`. */
export function levelForVerbosity(v: number): string {
  if (v >= 6) return 'trace';
  if (v >= 4) return 'debug';
  if (v >= 2) return 'verbose';
  return 'info';
}

export function createLogger(opts: LogOptions): Logger {
  const destination = opts.destination ?? pino.destination({ fd: 2, sync: true });
  return pino<'verbose'>({
    level: levelForVerbosity(opts.verbosity),
    customLevels: LEVELS,
    base: { pid: process.pid, ...opts.base },
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, opts.format === 'text' ? new PlainLines(destination) : destination);
}

/** The `log(message)` callback the agent's parts take, at info level of `logger`. */
export function logCallback(logger: Logger): (message: string) => void {
  return (message) => logger.info(message);
}

/**
 * pino's JSON lines as "TIME LEVEL [node] component: message key=value", for people.
 * Not pino-pretty: a few lines of code instead of a dependency, and the JSON form stays
 * the one the agent emits.
 */
class PlainLines implements DestinationStream {
  readonly #out: DestinationStream;

  constructor(out: DestinationStream) {
    this.#out = out;
  }

  write(line: string): void {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#out.write(line);
      return;
    }
    const { time, level, msg, node, component, pid: _pid, ...rest } = o;
    const extra = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
    const who = `agent${node === undefined ? '' : `[${String(node)}]`}${component === undefined ? '' : ` ${String(component)}`}`;
    this.#out.write(`${String(time)} ${String(level).toUpperCase()} ${who}: ${String(msg ?? '')}${extra === '' ? '' : ` ${extra}`}\n`);
  }
}

// The kubelet's part for the node agent, in a Tapir lab: in a cluster the agent is a
// DaemonSet pod, and the kubelet restarts it when it exits, with a back-off that doubles
// (10 s up to 5 min there; 1 s up to 30 s here, a lab being small and watched) and
// starts over once the container has run well for a while. The first restart is
// immediate, as the kubelet's is: one crash should cost the node's Service flows no
// more than the agent's own start-up (its flow tables outlive it, src/tables/flow-store.ts). Pods keep their eth0 while
// the agent is away (its TAPs are persistent), and the restarted agent re-attaches them.
//
// The supervisor also tells health: an agent that runs but does not answer on its
// control socket (hung, or stopped with SIGSTOP) is not healthy, and the node stops
// announcing load-balancer addresses until it answers again (node-daemon.ts).
import { closeSync, openSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { agentStatusAt } from '../network/agent-control.ts';
import { isAlive } from '../network/processes.ts';

/** How the node daemon starts the agent: the same command `lab up` ran. */
export interface SupervisedAgent {
  argv: string[];
  /** Added to the daemon's environment (cluster mode: KUBERNETES_SERVICE_HOST/PORT, NODE_NAME). */
  env?: Record<string, string>;
  log: string;
  controlSocket: string;
  /** The agent `lab up` started (null: none yet). */
  pid: number | null;
}

/** What the node daemon writes about its agent in its status file. */
export interface AgentHealth {
  pid: number | null;
  running: boolean;
  /** It answered `status` on its control socket in this pass. */
  answers: boolean;
  restarts: number;
  /** When the last exit was seen, and the next start is due (ISO times), if it is down. */
  lastExit: string | null;
  nextStart: string | null;
}

/** Back-off after the first restart; the first one is immediate. */
const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
/** Running and answering this long resets the back-off (the kubelet's is 10 min). */
const BACKOFF_RESET_MS = 60_000;
/** A status answer slower than this counts as not answering: the datapath is stuck. */
const ANSWER_TIMEOUT_MS = 500;
/** How often the agent's process is looked at between passes. */
const EXIT_POLL_MS = 50;

export class AgentSupervisor {
  readonly #agent: SupervisedAgent;
  readonly #log: (message: string) => void;
  #pid: number | null;
  #restarts = 0;
  #backoffMs = 0;
  #nextStartAt = 0;
  #lastExit: number | null = null;
  #healthySince: number | null = null;

  constructor(agent: SupervisedAgent, log: (message: string) => void) {
    this.#agent = agent;
    this.#log = log;
    this.#pid = agent.pid;
  }

  /**
   * Watches for the agent's exit between the daemon's passes too (every 50 ms: a kill(2)
   * with signal 0), so that an immediate restart is immediate. Returns the stopper.
   */
  watch(): () => void {
    const timer = setInterval(() => this.#check(Date.now()), EXIT_POLL_MS);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** One look at the agent; starts it again when it is down and its back-off has passed. */
  async tick(now: number): Promise<AgentHealth> {
    this.#check(now);
    const running = this.#pid !== null;
    const answers = running && (await agentStatusAt(this.#agent.controlSocket, ANSWER_TIMEOUT_MS)) !== null;
    if (answers) {
      this.#healthySince ??= now;
      if (now - this.#healthySince >= BACKOFF_RESET_MS) this.#backoffMs = 0;
    } else {
      this.#healthySince = null;
    }
    return {
      pid: this.#pid,
      running,
      answers,
      restarts: this.#restarts,
      lastExit: this.#lastExit === null ? null : new Date(this.#lastExit).toISOString(),
      nextStart: running ? null : new Date(this.#nextStartAt).toISOString(),
    };
  }

  /** Notices an exit (and schedules the restart), and starts the agent when it is due. */
  #check(now: number): void {
    if (this.#pid !== null && !isAlive(this.#pid)) {
      this.#log(`agent pid ${this.#pid} exited; starting it again ${this.#backoffMs === 0 ? 'now' : `in ${this.#backoffMs / 1000} s`} (restart ${this.#restarts + 1})`);
      this.#pid = null;
      this.#lastExit = now;
      this.#nextStartAt = now + this.#backoffMs;
      this.#backoffMs = Math.min(Math.max(this.#backoffMs * 2, FIRST_BACKOFF_MS), MAX_BACKOFF_MS);
      this.#healthySince = null;
    }
    if (this.#pid === null && now >= this.#nextStartAt) this.#start();
  }

  #start(): void {
    const [command, ...args] = this.#agent.argv;
    if (command === undefined) return;
    const fd = openSync(this.#agent.log, 'a');
    try {
      // Detached like the agent `lab up` started: `lab down` finds it by its --config
      // path and ends it with the lab; the daemon's own exit leaves it running.
      const child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, ...this.#agent.env } });
      child.on('error', (err) => this.#log(`agent: cannot start ${command}: ${err.message}`));
      child.unref();
      this.#pid = child.pid ?? null;
    } finally {
      closeSync(fd);
    }
    if (this.#pid !== null) {
      this.#restarts++;
      this.#log(`agent started again, pid ${this.#pid} (restart ${this.#restarts})`);
    } else {
      this.#nextStartAt = Date.now() + Math.max(this.#backoffMs, FIRST_BACKOFF_MS);
    }
  }
}

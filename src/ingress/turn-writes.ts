// Writes held to the end of the loop turn: every connection with output registers here
// and writes once, in the check phase after the poll phase has handled every socket
// that was ready. Requests that arrived together then leave together: the endpoints
// (and clients) they go to are woken once for the lot instead of once per write. Both
// HTTP engines write this way: HTTP/1.1 client and upstream connections, and the h2
// connections' framed output.
export interface TurnWriter {
  /** Writes what was queued. */
  writeTurn(): void;
}

let pending: TurnWriter[] = [];
let spare: TurnWriter[] = [];
let scheduled = false;

function writeAll(): void {
  scheduled = false;
  // A writer's write can queue more (a pipelined response): that goes to the next turn.
  const batch = pending;
  pending = spare;
  for (let i = 0; i < batch.length; i++) batch[i]!.writeTurn();
  batch.length = 0;
  spare = batch;
}

/** Queues `w`'s write for the end of this turn; the caller keeps it from queuing twice. */
export function writeAtTurnEnd(w: TurnWriter): void {
  pending.push(w);
  if (!scheduled) {
    scheduled = true;
    setImmediate(writeAll);
  }
}

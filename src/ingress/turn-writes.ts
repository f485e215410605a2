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
/** Writers the others write through (the addon's sockets, h1-native.ts): after them, in the same turn. */
let last: TurnWriter[] = [];
let scheduled = false;
/** writeAll is running its batch: a writer queued with writeAfterTurnWrites now runs at its end. */
let writing = false;

function writeAll(): void {
  scheduled = false;
  // A writer's write can queue more (a pipelined response): that goes to the next turn.
  const batch = pending;
  pending = spare;
  writing = true;
  try {
    for (let i = 0; i < batch.length; i++) batch[i]!.writeTurn();
  } finally {
    writing = false;
  }
  batch.length = 0;
  spare = batch;
  if (last.length === 0) return;
  const after = last;
  last = [];
  for (let i = 0; i < after.length; i++) after[i]!.writeTurn();
}

/** Queues `w`'s write for the end of this turn; the caller keeps it from queuing twice. */
export function writeAtTurnEnd(w: TurnWriter): void {
  pending.push(w);
  if (!scheduled) {
    scheduled = true;
    setImmediate(writeAll);
  }
}

/**
 * Queues `w`'s write for the end of this turn, after every writer queued with
 * writeAtTurnEnd (those write through it: the addon's sockets queue what the
 * connections write and send it in one go); the caller keeps it from queuing twice.
 */
export function writeAfterTurnWrites(w: TurnWriter): void {
  last.push(w);
  if (!scheduled && !writing) {
    scheduled = true;
    setImmediate(writeAll);
  }
}

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

/**
 * Two lists swapped each turn: the one being written and the one filling for the next.
 * Each is emptied slot by slot, keeping its storage (a length of 0 would free it and
 * the next turn's pushes allocate it again).
 */
let pending: TurnWriter[] = [];
let pendingN = 0;
let spare: TurnWriter[] = [];
/** Writers the others write through (the addon's sockets, h1-native.ts): after them, in the same turn. */
const last: TurnWriter[] = [];
let lastN = 0;
let scheduled = false;
/** writeAll is running its batch: a writer queued with writeAfterTurnWrites now runs at its end. */
let writing = false;
const NOBODY: TurnWriter = { writeTurn: () => undefined };

function writeAll(): void {
  scheduled = false;
  // A writer's write can queue more (a pipelined response): that goes to the next turn.
  const batch = pending, n = pendingN;
  pending = spare;
  pendingN = 0;
  spare = batch;
  writing = true;
  try {
    for (let i = 0; i < n; i++) {
      const w = batch[i]!;
      batch[i] = NOBODY;
      w.writeTurn();
    }
  } finally {
    writing = false;
  }
  // The last writers may queue others (a dispatch of what their flush brought): next turn.
  for (let i = 0; i < lastN; i++) {
    const w = last[i]!;
    last[i] = NOBODY;
    w.writeTurn();
  }
  lastN = 0;
}

/** Queues `w`'s write for the end of this turn; the caller keeps it from queuing twice. */
export function writeAtTurnEnd(w: TurnWriter): void {
  pending[pendingN++] = w;
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
  last[lastN++] = w;
  if (!scheduled && !writing) {
    scheduled = true;
    setImmediate(writeAll);
  }
}

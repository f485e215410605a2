// turn-writes.ts: the order in which the Ingress proxy's writers run at the end of a
// loop turn. Connections write with writeAtTurnEnd; the addon's sockets, which those
// writes go through, with writeAfterTurnWrites, and must run after them in the same
// turn, not a turn later.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { writeAfterTurnWrites, writeAtTurnEnd, type TurnWriter } from '../src/ingress/turn-writes.ts';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('writers run once at the end of the turn, in order; the one queued after them runs last in the same turn; what a writer queues waits for the next turn', async () => {
  const log: string[] = [];
  const writer = (name: string, then?: () => void): TurnWriter => ({ writeTurn: () => { log.push(name); then?.(); } });
  const sockets = writer('sockets');
  let socketsQueued = false;
  const queueSockets = (): void => {
    if (socketsQueued) return;
    socketsQueued = true;
    writeAfterTurnWrites({ writeTurn: () => { socketsQueued = false; sockets.writeTurn(); } });
  };
  writeAtTurnEnd(writer('a', queueSockets));
  writeAtTurnEnd(writer('b', () => { queueSockets(); writeAtTurnEnd(writer('pipelined', queueSockets)); }));
  assert.deepEqual(log, [], 'nothing is written before the end of the turn');
  await turn();
  assert.deepEqual(log, ['a', 'b', 'sockets'], 'the sockets go once, after the connections, in the same turn');
  await turn();
  assert.deepEqual(log, ['a', 'b', 'sockets', 'pipelined', 'sockets']);

  // Queued outside any batch, the sockets' writer runs at the end of the turn too.
  queueSockets();
  await turn();
  assert.deepEqual(log.slice(5), ['sockets']);
});

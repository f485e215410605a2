// Watch streams: one JSON event per line ({"type":"ADDED","object":{...}}) on a chunked
// HTTP/1.1 response, with kube-apiserver's semantics:
// - no resourceVersion or "0": synthetic ADDED events for every matching object, then changes;
// - resourceVersion N: every change after N, or an ERROR event with a 410 Expired Status
//   when the history no longer reaches back to N (HTTP 200, as the watch cache answers);
// - selectors apply to both sides of a change: an object that stops matching arrives as
//   DELETED, one that starts matching as ADDED;
// - allowWatchBookmarks: BOOKMARK events with the current resourceVersion at an interval;
// - timeoutSeconds: the server ends the watch, and the client resumes from its last version.
import type { ServerResponse } from 'node:http';
import type { Raw } from '../../config/fields.ts';
import type { ObjectHandlers, ResourceRequest } from './handlers.ts';
import { resourceKey } from './resources.ts';
import { ApiError } from './status.ts';
import type { Change, EventType, Obj, Store, Watcher } from './store.ts';
import { toTable } from './table.ts';

export interface WatchSettings {
  bookmarkIntervalMs: number;
  /** Set by fault injection: answer the next watches with 410 Expired whatever they ask. */
  expireNext: () => boolean;
  /** Converts objects to a meta.k8s.io Table (kubectl get -w); '' sends objects as they are. */
  table: '' | 'Metadata' | 'Object' | 'None';
}

export function serveWatch(handlers: ObjectHandlers, req: ResourceRequest, response: ServerResponse, settings: WatchSettings): void {
  const store: Store = handlers.store;
  const res = resourceKey(req.info);
  const filter = handlers.filter(req);
  const ns = req.namespace;
  const matches = (o: Obj): boolean => (ns === '' || o.metadata.namespace === ns) && filter(o);
  let stalled = false;
  let ended = false;
  if (req.query.get('sendInitialEvents') === 'true') {
    throw ApiError.invalid('ListOptions', 'meta.k8s.io', '', [{ reason: 'FieldValueForbidden', message: 'Forbidden: sendInitialEvents is not supported by the lab API server; list, then watch from the list\'s resourceVersion', field: 'sendInitialEvents' }]);
  }
  response.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
  response.flushHeaders();
  const send = (type: EventType | 'BOOKMARK' | 'ERROR', object: Raw): void => {
    const body = settings.table !== '' && (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED')
      ? toTable(res, [object as Obj], String((object as Obj).metadata.resourceVersion), settings.table)
      : object;
    response.write(`${JSON.stringify({ type, object: body })}\n`);
  };
  const rvText = req.query.get('resourceVersion') ?? '';
  const rv = Number(rvText);
  if (rvText !== '' && !/^\d+$/.test(rvText)) {
    send('ERROR', ApiError.badRequest(`resourceVersion: Invalid value: ${JSON.stringify(rvText)}: must be an integer`).toStatus());
    response.end();
    return;
  }
  if (settings.expireNext() || (rv > 0 && rv < store.oldestResumableRV)) {
    send('ERROR', ApiError.gone(rv, store.oldestResumableRV + 1).toStatus());
    response.end();
    return;
  }
  if (rv === 0) {
    for (const o of store.list(res, ns)) if (filter(o)) send('ADDED', o);
  } else {
    for (const c of store.changesSince(res, rv)!) deliver(c);
  }

  function deliver(c: Change): void {
    if (stalled || ended) return;
    const now = matches(c.object);
    let type: EventType = c.type;
    if (c.type === 'MODIFIED') {
      const before = c.previous !== undefined && matches(c.previous);
      if (!before && !now) return;
      type = before && now ? 'MODIFIED' : now ? 'ADDED' : 'DELETED';
    } else if (!now) return;
    send(type, c.object);
  }
  const end = (): void => {
    if (ended) return;
    ended = true;
    store.removeWatcher(watcher);
    clearInterval(bookmarks);
    clearTimeout(timeout);
    response.end();
  };
  const watcher: Watcher = {
    res,
    deliver,
    close: end,
    stall: () => {
      stalled = true;
      clearInterval(bookmarks);
    },
  };
  store.addWatcher(watcher);
  const bookmarks = req.query.get('allowWatchBookmarks') !== 'true' ? undefined : setInterval(() => {
    send('BOOKMARK', { kind: req.info.kind, apiVersion: req.info.group === '' ? req.info.version : `${req.info.group}/${req.info.version}`, metadata: { resourceVersion: String(store.resourceVersion) } });
  }, settings.bookmarkIntervalMs);
  const timeoutSeconds = Number(req.query.get('timeoutSeconds') ?? '0');
  const timeout = timeoutSeconds > 0 ? setTimeout(end, timeoutSeconds * 1000) : undefined;
  response.on('close', end);
}

// The live `server` event feed, opened once for the whole page so the Events
// page shows what happened before it was opened, and other pages can react
// (a session started, the policy was reloaded).

import { LiveSocket } from './socket.js';

/** Events kept for the Events page. */
export const MAX_EVENTS = 1000;

const events = [];
const listeners = new Set();
let sock = null;
let settle;
/** Resolves once the feed opened or failed for the first time. */
export const ready = new Promise((r) => { settle = r; });

/** Events so far, oldest first. */
export function all() { return events; }

export function clearAll() { events.length = 0; emit(null); }

/** Call `fn(event)` for each new event (and `fn(null)` after a clear). */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(ev) {
  for (const fn of listeners) {
    try { fn(ev); } catch (e) { console.warn('event listener failed', e); }
  }
}

function push(ev) {
  events.push(ev);
  if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
  emit(ev);
}

/** Open the feed (idempotent). */
export function start() {
  if (sock) return sock;
  sock = new LiveSocket({
    source: 'events',
    label: 'Live events',
    path: () => '/api/events?channel=server',
    onState: (s) => { if (s !== 'connecting') settle(); },
    onMessage(m) {
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      if (!ev || typeof ev.type !== 'string') return;
      if (ev.type === 'lagged') {
        ev = { type: 'lagged', ts: new Date().toISOString(), data: { dropped: ev.dropped, note: 'this page fell behind; events were dropped' } };
      }
      push(ev);
    },
  });
  sock.start();
  return sock;
}

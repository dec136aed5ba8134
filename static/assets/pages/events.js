// Events: the live `server` feed (sign-ins, denials, sessions, reloads),
// newest first, filtered by type and text.

import { esc } from '../lib/api.js';
import * as feed from '../lib/feed.js';

const KNOWN = [
  'access.denied', 'client.connected', 'client.disconnected', 'policy.reloaded',
  'policy.reload_failed', 'session.created', 'session.exited', 'lagged',
];
/** Rows drawn at most (the feed keeps more). */
const SHOWN = 500;

let list;
let typeSel;
let textIn;
let note;
let visible = false;
let dirty = false;

function time(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? esc(ts) : d.toLocaleTimeString([], { hour12: false });
}

function summary(data) {
  if (data === null || data === undefined) return '';
  if (typeof data !== 'object') return esc(JSON.stringify(data));
  return Object.entries(data).map(([k, v]) => {
    const val = typeof v === 'string' ? v : JSON.stringify(v);
    return `<span class="k">${esc(k)}=</span>${esc(val)}`;
  }).join('  ');
}

function matches(ev) {
  if (typeSel.value && ev.type !== typeSel.value) return false;
  const t = textIn.value.trim().toLowerCase();
  return !t || JSON.stringify(ev).toLowerCase().includes(t);
}

function addType(type) {
  if ([...typeSel.options].some((o) => o.value === type)) return;
  const o = document.createElement('option');
  o.value = o.textContent = type;
  typeSel.append(o);
}

function render() {
  dirty = false;
  const all = feed.all();
  const shown = [];
  for (let i = all.length - 1; i >= 0 && shown.length < SHOWN; i--) {
    if (matches(all[i])) shown.push(all[i]);
  }
  list.innerHTML = shown.length
    ? shown.map((ev) => `<li><span class="ev-time" title="${esc(ev.ts)}">${time(ev.ts)}</span>`
      + `<span class="ev-type" data-type="${esc(ev.type)}">${esc(ev.type)}</span>`
      + `<span class="ev-data">${summary(ev.data)}</span></li>`).join('')
    : `<li class="events-empty">${all.length ? 'No event matches the filter.' : 'Waiting for events…'}</li>`;
  note.textContent = `${shown.length} shown of ${all.length} received since this page was opened (at most ${feed.MAX_EVENTS} kept).`;
}

export function mount() {
  list = document.getElementById('events-list');
  typeSel = document.getElementById('events-type');
  textIn = document.getElementById('events-text');
  note = document.getElementById('events-note');
  KNOWN.forEach(addType);
  for (const ev of feed.all()) addType(ev.type);
  typeSel.addEventListener('change', render);
  textIn.addEventListener('input', render);
  document.getElementById('events-clear').addEventListener('click', () => feed.clearAll());
  feed.subscribe((ev) => {
    if (ev) addType(ev.type);
    if (!visible) { dirty = true; return; }
    if (!dirty) { dirty = true; requestAnimationFrame(render); }
  });
}

export function show() {
  visible = true;
  render();
}

export function hide() {
  visible = false;
}

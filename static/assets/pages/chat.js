// Chat: the agent's terminal (a PTY on the server) in xterm.js, over
// WS /api/ws. The session id is kept in the address (`/chat?session=ID`) and
// in sessionStorage, so a reload or a reconnect attaches to the same session
// (`?session=ID`: scrollback first, then live output) instead of starting a
// new one. The socket URL never carries a token: the session cookie (or the
// policy) lets it in.

import { api, BASE, esc, reasonText } from '../lib/api.js';
import * as banner from '../lib/banner.js';
import * as feed from '../lib/feed.js';
import { LiveSocket } from '../lib/socket.js';

const STORE_KEY = 'dashgate.chat.session';
const KEYS = {
  esc: '\x1b', tab: '\t', 'ctrl-c': '\x03', 'ctrl-d': '\x04',
  up: '\x1b[A', down: '\x1b[B', right: '\x1b[C', left: '\x1b[D',
};

let page;
let termEl;
let term = null;
let fit = null;
let sock = null;
let sessionId = null;
let exited = false;
let sessions = [];
const encoder = new TextEncoder();

function urlSession() {
  return new URLSearchParams(location.search).get('session');
}

function onChatPage() {
  return !page.hidden;
}

/** Put the session id in the address bar of the chat page (not elsewhere). */
function syncUrl() {
  if (!onChatPage()) return;
  const q = new URLSearchParams(location.search);
  if (sessionId) q.set('session', sessionId);
  else q.delete('session');
  const s = q.toString();
  const want = `${BASE}/chat${s ? `?${s}` : ''}`;
  if (location.pathname + location.search !== want) history.replaceState(null, '', want);
}

function remember(id) {
  sessionId = id;
  if (id) sessionStorage.setItem(STORE_KEY, id);
  else sessionStorage.removeItem(STORE_KEY);
  page.dataset.session = id || '';
  syncUrl();
  renderChips();
}

function setState(s) {
  termEl.dataset.state = exited ? 'exited' : s;
}

let readOnly = false;

/** Show (or hide) the read-only badge on the terminal. */
function setReadOnly(on) {
  readOnly = on;
  termEl.dataset.readonly = on ? 'true' : 'false';
  document.getElementById('chat-readonly').hidden = !on;
  // A read-only viewer can neither end the session nor start one (403).
  document.getElementById('chat-end').disabled = on || !sessionId;
  document.getElementById('chat-new').disabled = on;
}

function sendText(s) {
  if (readOnly) return;
  sock?.send(encoder.encode(s));
}

function sendResize() {
  if (readOnly) return;
  if (term && sock?.open) sock.send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
}

function refit() {
  if (!fit || !onChatPage() || termEl.clientWidth === 0) return;
  try { fit.fit(); } catch { /* not rendered yet */ }
}

function path() {
  if (sessionId) return `/api/ws?session=${encodeURIComponent(sessionId)}`;
  return `/api/ws?cols=${term.cols}&rows=${term.rows}`;
}

function onMessage(ev) {
  if (typeof ev.data !== 'string') {
    term.write(new Uint8Array(ev.data));
    return;
  }
  let m;
  try { m = JSON.parse(ev.data); } catch { return; }
  if (m.type === 'session') {
    exited = false;
    setReadOnly(false);
    remember(m.id);
  } else if (m.type === 'read_only') {
    // The server drops this viewer's keys; say so once, on the terminal.
    setReadOnly(true);
  } else if (m.type === 'exit') {
    exited = true;
    setState('exited');
    const id = sessionId;
    term.write(`\r\n\x1b[2m[the program exited with code ${m.code}]\x1b[0m\r\n\x1b[?25l`);
    remember(null);
    banner.show('chat-session', {
      level: 'info',
      html: `<b>Chat</b> session <code>${esc(id)}</code> ended: the program exited with code <code>${esc(m.code)}</code>.`,
      actions: [{ label: 'New session', onClick: () => startNew() }],
    });
    refreshList();
  }
}

async function onClosed(info) {
  if (exited) return { stop: true };
  if (info.opened && info.code === 1000) {
    // Closed normally without an exit frame: the session is over.
    remember(null);
    banner.show('chat-session', {
      level: 'info',
      html: `<b>Chat</b> the session was closed${info.reason ? `: <code>${esc(info.reason)}</code>` : ''}.`,
      actions: [{ label: 'New session', onClick: () => startNew() }],
    });
    return { stop: true };
  }
  if (!info.opened && !sessionId) {
    // A new session was refused at the handshake, whose status the browser
    // hides. Start it over REST instead: its refusal is readable JSON
    // (503 too_many_sessions, …), and on success we attach to it.
    try {
      const s = await api('/api/sessions', { method: 'POST', body: { cols: term.cols, rows: term.rows } });
      remember(s.id);
      return { now: true };
    } catch (e) {
      if (e.status && e.status !== 401 && e.status !== 403 && e.status !== 429) {
        return {
          explain: {
            html: `could not start a session: <code>${esc(e.status)}</code> <code>${esc(e.reason || '')}</code>: ${esc(reasonText(e.reason, e.message))}`,
          },
        };
      }
      return undefined; // the gate refused: the probe will say why
    }
  }
  if (!info.opened && sessionId) {
    // Refused while attaching: is the session still there?
    try {
      const s = await api(`/api/sessions/${encodeURIComponent(sessionId)}`);
      if (s && s.status === 'exited') throw Object.assign(new Error('exited'), { status: 404 });
    } catch (e) {
      if (e.status === 404 || e.status === 409) {
        const gone = sessionId;
        remember(null);
        banner.show('chat-session', {
          level: 'info',
          html: `<b>Chat</b> session <code>${esc(gone)}</code> no longer exists; started a new one.`,
          ttl: 8000,
        });
        return { now: true };
      }
    }
  }
  return undefined;
}

function connect() {
  exited = false;
  sock.start();
  term.focus();
}

/** Start a new session (the old one keeps running until it exits or is ended). */
export function startNew() {
  sock.stop();
  banner.clear('chat-session');
  remember(null);
  connect();
}

/** Attach to session `id`. */
export function attach(id) {
  if (!id || (id === sessionId && sock.current !== 'stopped')) return;
  sock.stop();
  banner.clear('chat-session');
  remember(id);
  connect();
}

async function endCurrent() {
  const id = sessionId;
  if (!id || !confirm(`End session ${id}? Its program is sent SIGHUP.`)) return;
  try {
    await api(`/api/sessions/${encodeURIComponent(id)}`, { method: 'DELETE' });
  } catch (e) {
    banner.show('chat-session', {
      html: `<b>Chat</b> could not end <code>${esc(id)}</code>: <code>${esc(e.status)}</code> <code>${esc(e.reason || e.message)}</code>`,
      ttl: 10_000,
    });
  }
  refreshList();
}

function renderChips() {
  const box = document.getElementById('chat-sessions');
  if (!box) return;
  const live = sessions.filter((s) => s.status !== 'exited' || s.id === sessionId);
  if (!live.length) {
    box.innerHTML = `<span class="chips-empty">${sessionId ? '' : 'No running sessions'}</span>`;
  } else {
    box.innerHTML = live.map((s) => {
      const cmd = (s.command && s.command[0]) ? s.command[0].split('/').pop() : '?';
      return `<button class="chip" data-id="${esc(s.id)}" data-status="${esc(s.status)}" aria-current="${s.id === sessionId}"
        title="${esc((s.command || []).join(' '))} · pid ${esc(s.pid)} · owner ${esc(s.owner ?? '')} · ${esc(s.viewers)} viewer(s)">
        <span class="dot"></span>${esc(cmd)} <span class="muted">${esc(s.id.slice(0, 8))}</span></button>`;
    }).join('');
  }
  document.getElementById('chat-end').disabled = !sessionId || readOnly;
}

async function refreshList() {
  try {
    const body = await api('/api/sessions');
    sessions = Array.isArray(body) ? body : (body && body.sessions) || [];
  } catch {
    sessions = [];
  }
  renderChips();
}

function failed(msg) {
  termEl.innerHTML = `<p class="alert">${msg}</p>`;
}

export async function mount(el) {
  page = el;
  termEl = document.getElementById('terminal');
  let Terminal;
  let FitAddon;
  try {
    ({ Terminal } = await import('/vendor/xterm/lib/xterm.mjs'));
    ({ FitAddon } = await import('/vendor/addon-fit/lib/addon-fit.mjs'));
  } catch (e) {
    failed(`The terminal (xterm.js) could not be loaded: ${esc(e.message)}. Run <code>make deps-web</code> on the server.`);
    return;
  }
  const narrow = matchMedia('(max-width: 720px)').matches;
  term = new Terminal({
    cursorBlink: true,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
    fontSize: narrow ? 13 : 14,
    scrollback: 5000,
    theme: {
      background: '#0d1117', foreground: '#e6edf3', cursor: '#58a6ff', selectionBackground: '#264f78',
      black: '#484f58', red: '#ff7b72', green: '#3fb950', yellow: '#d29922', blue: '#58a6ff',
      magenta: '#bc8cff', cyan: '#39c5cf', white: '#b1bac4', brightBlack: '#6e7681', brightRed: '#ffa198',
      brightGreen: '#56d364', brightYellow: '#e3b341', brightBlue: '#79c0ff', brightMagenta: '#d2a8ff',
      brightCyan: '#56d4dd', brightWhite: '#ffffff',
    },
  });
  fit = new FitAddon();
  term.loadAddon(fit);
  term.open(termEl);
  refit();
  term.onData((d) => sendText(d));
  term.onBinary((d) => sock?.send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff)));
  term.onResize(() => sendResize());
  let pending = false;
  new ResizeObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; refit(); });
  }).observe(termEl);

  document.getElementById('chat-new').addEventListener('click', () => startNew());
  document.getElementById('chat-end').addEventListener('click', () => endCurrent());
  document.getElementById('chat-sessions').addEventListener('click', (e) => {
    const chip = e.target.closest('.chip');
    if (chip) attach(chip.dataset.id);
  });
  document.getElementById('chat-keys').addEventListener('click', (e) => {
    const k = e.target.closest('button')?.dataset.key;
    if (k) { sendText(KEYS[k]); term.focus(); }
  });

  sock = new LiveSocket({
    source: 'chat',
    label: 'Chat',
    binary: true,
    path,
    // Every (re)attach replays the scrollback: start from a clean screen.
    onOpen: () => { term.reset(); sendResize(); },
    onMessage,
    onClosed,
    onState: setState,
  });
  feed.subscribe((ev) => { if (ev && ev.type.startsWith('session.')) refreshList(); });

  sessionId = urlSession() || sessionStorage.getItem(STORE_KEY);
  remember(sessionId);
  // Let the live feed subscribe first, so the Events page sees this
  // session's session.created (but never wait long for it).
  await Promise.race([feed.ready, new Promise((r) => setTimeout(r, 1500))]);
  connect();
  refreshList();
}

export function show() {
  if (!term) return;
  const want = urlSession();
  if (want && want !== sessionId) attach(want);
  else syncUrl();
  refit();
  term.focus();
}

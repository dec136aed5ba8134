// A WebSocket that says why it closed and comes back by itself.
//
// When a socket is refused or lost, the banner shows the close code and
// reason the server sent, or, for a refused handshake (whose status the
// browser hides), the gate's own verdict from a probe of /api/whoami. Then
// it reconnects with exponential backoff (1 s doubling to 30 s, with jitter),
// except where retrying cannot help: the program exited, or the user has to
// sign in again.

import * as banner from './banner.js';
import { closeText, esc, loginHref, probe, reasonText, wsUrl } from './api.js';

const MAX_DELAY_MS = 30_000;
/** A socket open this long counts as healthy: the backoff starts over. */
const HEALTHY_MS = 5_000;

let unloading = false;
addEventListener('pagehide', () => { unloading = true; });
addEventListener('pageshow', () => { unloading = false; });

export function backoff(failures) {
  const base = Math.min(MAX_DELAY_MS, 1000 * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export class LiveSocket {
  /**
   * @param {object} o
   * @param {string} o.source    banner key
   * @param {string} o.label     shown in the banner ("Chat", "Live events")
   * @param {() => string} o.path  path + query to open (called per attempt)
   * @param {boolean} [o.binary] receive binary frames as ArrayBuffer
   * @param {(ws: WebSocket) => void} [o.onOpen]
   * @param {(ev: MessageEvent) => void} [o.onMessage]
   * @param {(info: {code, reason, opened, path}) => Promise<object|undefined>|object|undefined} [o.onClosed]
   *        may take over: return {stop: true} (the owner showed its own
   *        message), {now: true} (reconnect at once), {explain: {html,
   *        level}} (its own words for why, then the usual retry), or nothing.
   * @param {(state: string) => void} [o.onState]  connecting|open|retrying|stopped
   */
  constructor(o) {
    Object.assign(this, o);
    this.ws = null;
    this.failures = 0;
    this.stopped = true;
    this.timer = null;
    this.tick = null;
    addEventListener('online', () => { if (this.timer) this.connect(); });
  }

  get open() { return !!this.ws && this.ws.readyState === WebSocket.OPEN; }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Close for good (no reconnect, banner line removed). */
  stop() {
    this.stopped = true;
    this.cancelRetry();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try { ws.close(1000); } catch { /* already closed */ }
    }
    banner.clear(this.source);
    this.state('stopped');
  }

  send(data) {
    if (this.open) this.ws.send(data);
  }

  state(s) {
    this.current = s;
    if (this.onState) this.onState(s);
  }

  cancelRetry() {
    clearTimeout(this.timer);
    clearInterval(this.tick);
    this.timer = this.tick = null;
  }

  connect() {
    this.cancelRetry();
    if (this.ws) {
      this.ws.onclose = this.ws.onmessage = this.ws.onerror = this.ws.onopen = null;
      try { this.ws.close(1000); } catch { /* ignore */ }
    }
    const path = this.path();
    const ws = new WebSocket(wsUrl(path));
    if (this.binary) ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.state('connecting');
    let opened = false;
    let openedAt = 0;
    ws.onopen = () => {
      opened = true;
      openedAt = Date.now();
      if (this.failures > 0) {
        banner.show(this.source, { level: 'info', html: `<b>${esc(this.label)}</b> reconnected.`, ttl: 3000 });
      } else {
        banner.clear(this.source);
      }
      this.state('open');
      if (this.onOpen) this.onOpen(ws);
    };
    ws.onmessage = (ev) => { if (this.onMessage) this.onMessage(ev); };
    ws.onerror = () => { /* the close event follows with the details */ };
    ws.onclose = (ev) => {
      if (ws !== this.ws || this.stopped || unloading) return;
      this.ws = null;
      this.failures = opened && Date.now() - openedAt > HEALTHY_MS ? 1 : this.failures + 1;
      this.closed({ code: ev.code, reason: ev.reason, opened, path }).catch((e) => {
        banner.show(this.source, { html: `<b>${esc(this.label)}</b> ${esc(e.message)}` });
      });
    };
  }

  async closed(info) {
    const own = this.onClosed ? await this.onClosed(info) : undefined;
    if (this.stopped) return;
    if (own && own.stop) { this.state('stopped'); return; }
    if (own && own.now) { this.connect(); return; }

    const { code, reason, opened } = info;
    const label = `<b>${esc(this.label)}</b>`;
    let html;
    let retry = true;
    let signIn = false;
    let signInLabel = 'Sign in';
    let level = 'warn';
    let delay = backoff(this.failures);

    if (own && own.explain) {
      html = `${label} ${own.explain.html}`;
      level = own.explain.level || 'error';
    } else if (opened && code !== 1006) {
      // The server closed an open socket and said why.
      html = `${label} closed by the server: <code>${code}</code>${reason ? ` <code>${esc(reason)}</code>` : ''} (${esc(closeText(code, reason))})`;
      // The sign-in ended (expired, signed out, or its credential revoked).
      if (code === 4401) { retry = false; signIn = true; signInLabel = 'Sign in again'; }
      if (code === 4401 || code === 4403 || code === 1008) level = 'error';
      if (code === 1013) delay = 250;
    } else {
      // Refused at the handshake or cut off: ask the gate what it decides now.
      const p = await probe(info.path.split('?')[0]);
      if (this.stopped) return;
      if (p.offline) {
        html = `${label} cannot reach the server${opened ? ` (connection lost, <code>${code}</code>)` : ''}`;
      } else if (p.allowed) {
        html = opened
          ? `${label} connection lost (<code>${code}</code>)`
          : `${label} the WebSocket handshake failed (<code>${code}</code>) although the gate allows it now`;
      } else {
        html = `${label} refused by the server: <code>${p.status}</code> <code>${esc(p.reason)}</code>`
          + `${p.rule ? ` by rule “<b>${esc(p.rule)}</b>”` : ''}: ${esc(reasonText(p.reason, p.error))}`;
        level = 'error';
        if (p.reason === 'no_credential' || p.reason === 'bad_credential') { retry = false; signIn = true; }
        if (p.reason === 'too_many_failures') delay = Math.max(delay, 60_000);
      }
    }

    const actions = [];
    if (signIn) dispatchEvent(new CustomEvent('dashgate:signed-out'));
    if (signIn) actions.push({ label: signInLabel, href: loginHref() });
    if (retry) {
      const at = Date.now() + delay;
      html += `. Retrying in <span class="countdown">${Math.ceil(delay / 1000)}</span> s.`;
      actions.push({ label: 'Retry now', onClick: () => this.connect() });
      this.timer = setTimeout(() => this.connect(), delay);
      this.tick = setInterval(() => {
        const el = document.querySelector(`[data-source="${this.source}"] .countdown`);
        if (el) el.textContent = String(Math.max(0, Math.ceil((at - Date.now()) / 1000)));
      }, 1000);
      this.state('retrying');
    } else {
      html += '.';
      actions.push({ label: 'Retry', onClick: () => this.connect() });
      this.state('stopped');
    }
    banner.show(this.source, { level, html, actions });
  }
}

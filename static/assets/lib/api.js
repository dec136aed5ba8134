// REST helpers and the words for what the gate decided.
//
// Every refusal from dashgate is JSON {"error", "reason", "rule"}; the UI
// shows the reason code and the rule as they are (so they can be searched in
// the server log and the policy file) next to a sentence a person can act on.

/**
 * Where dashgate's own routes are: '' normally, '/.dashgate' in upstream mode
 * (where every other path is the fronted dashboard's). Derived from this
 * module's own URL (`BASE/assets/lib/api.js`), so no page needs telling.
 */
export const BASE = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');

/** A failed API call: status plus the server's JSON body. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.reason = this.body.reason || null;
    this.rule = this.body.rule || null;
  }
}

/** fetch + JSON, throwing ApiError on a non-2xx answer. */
export async function api(path, { method = 'GET', body } = {}) {
  const opts = { method, headers: { accept: 'application/json' }, cache: 'no-store' };
  if (body !== undefined) {
    opts.headers['content-type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(BASE + path, opts);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

const REASONS = {
  no_credential: 'you are not signed in, or your sign-in has expired',
  bad_credential: 'the credential was not accepted',
  rule_deny: 'a policy rule denies it',
  no_rule_matched: 'no policy rule allows it',
  origin_not_allowed: 'this page’s origin may not open it',
  host_not_allowed: 'the address in the browser is not an allowed host',
  non_canonical_path: 'the path is not canonical',
  bad_forwarding_header: 'a proxy sent a malformed forwarding header',
  too_many_failures: 'too many failed sign-ins from your address; wait a minute',
  session_not_found: 'that chat session no longer exists',
  too_many_sessions: 'the server runs as many chat sessions as it allows',
};

/**
 * Reasons whose message from the server says more than a sentence here can:
 * a refused Host names the host and how to allow it (--allowed-host …).
 */
const SERVER_WORDS = new Set(['host_not_allowed']);

/** A sentence for a reason code (falls back to the server's own message). */
export function reasonText(reason, fallback) {
  if (SERVER_WORDS.has(reason) && fallback) return fallback;
  return REASONS[reason] || fallback || reason || 'refused';
}

const CLOSE_CODES = {
  1000: 'closed normally',
  1001: 'the server is shutting down or restarting',
  1005: 'closed without a status',
  1006: 'the connection was lost',
  1007: 'the server refused a malformed message',
  1008: 'refused by the server',
  1009: 'a message was too big',
  1011: 'the server hit an error',
  1012: 'the server is restarting',
  1013: 'this viewer fell behind the output',
  4401: 'your sign-in ended',
  4403: 'the policy no longer allows this connection',
};

/** Close reasons that say more than their code (the server's exact words). */
const CLOSE_REASONS = {
  4401: {
    'credential revoked': 'your sign-in ended because the token or password it was made with '
      + 'was removed or changed in the server’s policy; sign in again with a current one',
  },
};

/** A sentence for a WebSocket close code (and its reason, where it tells more). */
export function closeText(code, reason) {
  return CLOSE_REASONS[code]?.[reason] || CLOSE_CODES[code] || 'closed';
}

/**
 * Why was a WebSocket to `path` refused or lost? Browsers hide the status and
 * body of a refused handshake, so ask the gate: /api/whoami answers with its
 * own refusal when the credential is the problem, and with `check` (the
 * verdict for a WebSocket to `path`) otherwise.
 *
 * Returns {offline} | {status, reason, rule, error} (refused) | {allowed: true}.
 */
export async function probe(path) {
  const q = new URLSearchParams({ path: BASE + path, transport: 'ws' });
  let r;
  try {
    r = await fetch(`${BASE}/api/whoami?${q}`, { headers: { accept: 'application/json' }, cache: 'no-store' });
  } catch {
    return { offline: true };
  }
  let body = null;
  try { body = await r.json(); } catch { body = null; }
  if (!r.ok) {
    return { status: r.status, reason: body && body.reason, rule: body && body.rule, error: body && body.error };
  }
  const c = body && body.check;
  if (c && !c.allowed) return { status: c.status, reason: c.reason, rule: c.rule, error: null };
  return { allowed: true, whoami: body };
}

/** "alice", "the startup token", … for a principal object. */
export function principalText(p) {
  if (!p) return 'unknown';
  switch (p.kind) {
    case 'anonymous': return 'anonymous';
    case 'startup_token': return 'the startup token';
    case 'token': return `token “${p.name}”`;
    case 'user': return `user “${p.name}”`;
    case 'forwarded': return `“${p.name}” (signed in at the proxy)`;
    case 'internal': return `session ${p.session}`;
    default: return p.kind;
  }
}

/** The sign-in page, coming back to where the user is now. */
export function loginHref() {
  return `${BASE}/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

/** Escape text for innerHTML templates. */
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** `ws://host/path` for this page (never with a token: the cookie signs in). */
export function wsUrl(path) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${BASE}${path}`;
}

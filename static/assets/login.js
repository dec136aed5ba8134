// The sign-in page (/login): a token, or a user name and password, sent to
// POST /api/login as JSON. On success the server sets the session cookie and
// answers with a checked local `next`; on refusal its JSON reason is shown.
// Loaded anonymously in the secure preset, so it may only use /assets/ files.

const REASONS = {
  bad_credential: 'That credential was not accepted.',
  too_many_failures: 'Too many failed attempts from your address.',
  bad_body: 'The sign-in request was malformed.',
  origin_not_allowed: 'This page’s origin may not sign in here.',
  host_not_allowed: 'The address in your browser is not an allowed host of this server.',
};

// dashgate's own routes: '' normally, '/.dashgate' in upstream mode (this
// file is BASE/assets/login.js). `next` defaults to `/`: the dashboard
// (in upstream mode, the fronted one's page).
const BASE = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const next = new URLSearchParams(location.search).get('next') || '/';
const errorBox = document.getElementById('login-error');

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function showError(status, body, retryAfter) {
  const reason = body && body.reason;
  const words = REASONS[reason] || (body && body.error) || `The server answered ${status}.`;
  let html = esc(words);
  if (retryAfter) html += ` Try again in ${esc(retryAfter)} s.`;
  html += `<div class="alert-detail"><code>${esc(status)}</code>${reason ? ` <code>${esc(reason)}</code>` : ''}`
    + `${body && body.rule ? ` rule “${esc(body.rule)}”` : ''}</div>`;
  errorBox.innerHTML = html;
  errorBox.hidden = false;
}

async function submit(form, payload) {
  const button = form.querySelector('button');
  button.disabled = true;
  errorBox.hidden = true;
  try {
    const r = await fetch(`${BASE}/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ ...payload, next }),
      credentials: 'same-origin',
    });
    let body = null;
    try { body = await r.json(); } catch { body = null; }
    if (r.ok) {
      location.replace((body && body.next) || '/');
      return;
    }
    showError(r.status, body, r.headers.get('retry-after'));
  } catch (e) {
    showError('network', { error: `The server cannot be reached (${e.message}).` });
  } finally {
    button.disabled = false;
  }
}

for (const el of document.querySelectorAll('input.next')) el.value = next;

document.getElementById('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  submit(e.target, { token: document.getElementById('token').value.trim() });
});

document.getElementById('password-form').addEventListener('submit', (e) => {
  e.preventDefault();
  submit(e.target, {
    username: document.getElementById('username').value.trim(),
    password: document.getElementById('password').value,
  });
});

document.getElementById('token').focus();

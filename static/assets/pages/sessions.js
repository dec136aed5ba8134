// Sessions: every chat session of the server as a table (GET /api/sessions),
// kept fresh by the live feed's session.* events; attach, start or end one.

import { api, BASE, esc } from '../lib/api.js';
import * as feed from '../lib/feed.js';
import { navigate } from '../lib/nav.js';

let tbody;
let note;
let timer = null;

function when(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return esc(iso);
  return `<time datetime="${esc(iso)}" title="${esc(iso)}">${esc(d.toLocaleString())}</time>`;
}

/** Who is attached: each viewer's principal, read-only ones marked. */
function watchers(s) {
  const list = s.watchers || [];
  if (!list.length) return '<span class="muted">nobody</span>';
  return list.map((w) => `<span class="tag${w.read_only ? ' tag-ro' : ''}">${esc(w.principal)}${w.read_only ? ' <small>read-only</small>' : ''}</span>`).join(' ');
}

function row(s) {
  const running = s.status !== 'exited';
  const status = running
    ? '<span class="badge badge-running">running</span>'
    : `<span class="badge badge-exited">exited ${esc(s.exit_code ?? (s.exit_signal != null ? `signal ${s.exit_signal}` : ''))}</span>`;
  const mine = sessionStorage.getItem('dashgate.chat.session') === s.id;
  return `<tr data-id="${esc(s.id)}" class="${mine ? 'current' : ''}">
    <td class="mono">${esc(s.id)}</td>
    <td class="mono">${esc((s.command || []).join(' '))}</td>
    <td class="mono">${esc(s.pid)}</td>
    <td>${when(s.created_at)}</td>
    <td class="mono">${esc(s.cols)}×${esc(s.rows)}</td>
    <td class="owner">${esc(s.owner ?? '')}</td>
    <td class="watchers">${watchers(s)}</td>
    <td>${status}</td>
    <td><div class="actions">${running
    ? `<a class="btn btn-small" href="${BASE}/chat?session=${encodeURIComponent(s.id)}" data-attach="${esc(s.id)}">Attach</a>
       <button class="btn btn-small btn-danger" data-end="${esc(s.id)}">End</button>` : ''}</div></td>
  </tr>`;
}

async function load() {
  try {
    const body = await api('/api/sessions');
    const list = Array.isArray(body) ? body : (body && body.sessions) || [];
    list.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    tbody.innerHTML = list.length
      ? list.map(row).join('')
      : '<tr class="empty"><td colspan="9">No chat sessions. Open the Chat page or press “New session”.</td></tr>';
    const running = list.filter((s) => s.status !== 'exited').length;
    note.textContent = `${running} running, ${list.length - running} exited.`;
  } catch (e) {
    tbody.innerHTML = '';
    note.innerHTML = `Could not list sessions: <code>${esc(e.status || '')}</code> <code>${esc(e.reason || e.message)}</code>`;
  }
}

export function mount() {
  tbody = document.querySelector('#sessions-table tbody');
  note = document.getElementById('sessions-note');
  document.getElementById('sessions-refresh').addEventListener('click', load);
  document.getElementById('sessions-new').addEventListener('click', async () => {
    try {
      const s = await api('/api/sessions', { method: 'POST', body: { cols: 80, rows: 24 } });
      navigate(`/chat?session=${encodeURIComponent(s.id)}`);
    } catch (e) {
      note.innerHTML = `Could not start a session: <code>${esc(e.status)}</code> <code>${esc(e.reason || e.message)}</code>`;
    }
  });
  tbody.addEventListener('click', async (e) => {
    const attach = e.target.closest('[data-attach]');
    if (attach && e.button === 0 && !e.metaKey && !e.ctrlKey) {
      e.preventDefault();
      navigate(`/chat?session=${encodeURIComponent(attach.dataset.attach)}`);
      return;
    }
    const end = e.target.closest('[data-end]');
    if (end && confirm(`End session ${end.dataset.end}? Its program is sent SIGHUP.`)) {
      try {
        await api(`/api/sessions/${encodeURIComponent(end.dataset.end)}`, { method: 'DELETE' });
      } catch (err) {
        note.innerHTML = `Could not end it: <code>${esc(err.status)}</code> <code>${esc(err.reason || err.message)}</code>`;
      }
      setTimeout(load, 300);
    }
  });
  feed.subscribe((ev) => { if (ev && (ev.type.startsWith('session.') || ev.type.startsWith('client.')) && !document.getElementById('page-sessions').hidden) load(); });
}

export function show() {
  load();
  clearInterval(timer);
  timer = setInterval(load, 10_000);
}

export function hide() {
  clearInterval(timer);
  timer = null;
}

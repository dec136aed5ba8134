// Access: the policy in force (GET /api/policy, /api/status) and what the
// gate thinks of you (GET /api/whoami): "you are PRINCIPAL from IP, allowed
// by rule R", with that rule marked in the ordered list.

import { api, esc, principalText } from '../lib/api.js';
import * as feed from '../lib/feed.js';

let you;
let who;
let summaryEl;
let checksEl;
let tbody;

const tags = (xs) => (xs && xs.length ? xs.map((x) => `<span class="tag">${esc(x)}</span>`).join('') : '<span class="muted">any</span>');

function dl(el, pairs) {
  el.innerHTML = pairs.filter(([, v]) => v !== undefined)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('');
}

function mode(status) {
  const p = status.policy || {};
  const src = String(p.source || '');
  if (src.startsWith('preset:')) return `preset <b>${esc(src.slice(7))}</b>`;
  return `file <code>${esc(src)}</code>${p.preset ? ` (extends <b>${esc(p.preset)}</b>)` : ''}`;
}

// The dashboard dashgate fronts (upstream mode): its URL, whether it is up,
// and its process when dashgate runs it (--upstream-command).
function upstreamCell(u) {
  const badge = { up: 'allow', starting: 'authenticate', down: 'deny' }[u.state] || 'exited';
  const parts = [`<code>${esc(u.url)}</code> <span class="badge badge-${badge}" id="access-upstream-state">${esc(u.state)}</span>`];
  if (u.since) parts.push(`<span class="muted small">since ${esc(new Date(u.since).toLocaleString())}</span>`);
  if (u.supervised) {
    const pid = u.pid != null ? `pid <code>${esc(u.pid)}</code>` : '<span class="muted">not running</span>';
    parts.push(`<br>run by dashgate: <code>${esc(u.command)}</code>, ${pid}, restarts ${esc(u.restarts)}`);
  }
  if (u.websockets) parts.push(`<br>${esc(u.websockets)} relayed WebSocket${u.websockets === 1 ? '' : 's'} open`);
  if (u.last_error) {
    const at = u.last_error_at ? ` <span class="muted small">(${esc(new Date(u.last_error_at).toLocaleString())})</span>` : '';
    parts.push(`<br><span class="muted">last error</span> ${esc(u.last_error)}${at}`);
  }
  return parts.join(' ');
}

function fromCell(r) {
  const parts = [];
  if (r.from) parts.push(tags(r.from));
  if (r.not_from) parts.push(`not ${tags(r.not_from)}`);
  return parts.length ? parts.join(' ') : '<span class="muted">anywhere</span>';
}

function whoCell(r) {
  const parts = [];
  if (r.users) parts.push(`users ${tags(r.users)}`);
  if (r.groups) parts.push(`groups ${tags(r.groups)}`);
  return parts.length ? parts.join(' ') : '<span class="muted">anyone</span>';
}

function renderRules(policy, whoami) {
  const rules = policy.rules || [];
  tbody.innerHTML = rules.map((r, i) => {
    const name = r.name || `rule ${i + 1}`;
    const mine = whoami && whoami.rule === name;
    return `<tr class="${mine ? 'current' : ''}"${mine ? ' aria-current="true"' : ''}>
      <td>${i + 1}</td>
      <td>${esc(name)}${mine ? ' <span class="muted small">← you</span>' : ''}</td>
      <td>${fromCell(r)}</td>
      <td>${tags(r.paths)}</td>
      <td>${tags(r.methods)}</td>
      <td>${r.transport ? `<span class="tag">${esc(r.transport)}</span>` : '<span class="muted">both</span>'}</td>
      <td>${whoCell(r)}</td>
      <td><span class="badge badge-${esc(r.action)}">${esc(r.action)}</span>${r.access === 'read' ? ' <span class="badge badge-read">read-only</span>' : ''}</td>
    </tr>`;
  }).join('') || '<tr class="empty"><td colspan="8">No rules: everything is denied.</td></tr>';
}

function list(xs, none) {
  if (xs === undefined || xs === null) return `<span class="muted">${esc(none)}</span>`;
  if (typeof xs === 'string') return `<code>${esc(xs)}</code>`;
  if (Array.isArray(xs)) return xs.length ? tags(xs) : `<span class="muted">${esc(none)}</span>`;
  return `<code>${esc(JSON.stringify(xs))}</code>`;
}

async function load() {
  let status; let policy; let whoami;
  try {
    [status, policy, whoami] = await Promise.all([api('/api/status'), api('/api/policy'), api('/api/whoami')]);
  } catch (e) {
    you.innerHTML = `Could not read the policy: <code>${esc(e.status || '')}</code> <code>${esc(e.reason || e.message)}</code>`
      + `${e.rule ? ` (rule “${esc(e.rule)}”)` : ''}`;
    return;
  }
  const via = whoami.peer_ip !== whoami.client_ip ? ` (through the proxy <b>${esc(whoami.peer_ip)}</b>)` : '';
  you.innerHTML = `You are <b>${esc(principalText(whoami.principal))}</b> from <b>${esc(whoami.client_ip)}</b>${via}, `
    + (whoami.rule ? `allowed by rule <b>“${esc(whoami.rule)}”</b>.` : 'allowed.');
  const groups = whoami.groups || [];
  const level = whoami.access === 'read'
    ? '<span class="badge badge-read">read-only</span>: you may look, but not change anything (no typing into chat sessions)'
    : '<span class="badge badge-full">full</span>';
  who.innerHTML = `Principal <b>${esc(whoami.name ?? 'anonymous')}</b>, groups ${groups.length ? tags(groups) : '<span class="muted">none</span>'}; `
    + `access given by the rule: ${level}.`;
  const p = status.policy || {};
  const c = policy.credentials || {};
  const names = (xs) => (xs && xs.length ? tags(xs.map((x) => x.name)) : '<span class="muted">none</span>');
  dl(summaryEl, [
    ['Mode', mode(status)],
    ['Rules', esc(p.rules ?? (policy.rules || []).length)],
    ['Loaded', p.loaded_at ? `${esc(new Date(p.loaded_at).toLocaleString())} <span class="muted mono">sha256 ${esc(String(p.sha256 || '').slice(0, 12))}</span>` : undefined],
    ['Listening on', `<code>${esc(status.bind)}</code>`],
    ['Upstream', status.upstream ? upstreamCell(status.upstream) : undefined],
    ['HTTPS', status.tls
      ? `certificate${status.tls.self_signed ? ' (self-signed)' : ''} <code>${esc(status.tls.cert_file)}</code><br>`
        + `<span class="muted">sha256</span> <code class="mono" id="access-tls-fingerprint">${esc(status.tls.fingerprint_sha256)}</code>`
      : '<span class="muted">off (plain HTTP)</span>'],
    ['Startup token', c.startup_token === false ? 'disabled' : 'accepted'],
    ['Tokens', names(c.tokens)],
    ['Users', names(c.users)],
    ['Forward auth', c.forward_auth ? `header <code>${esc(c.forward_auth.user_header)}</code> from trusted proxies sending the secret in <code>${esc(c.forward_auth.secret_header)}</code>` : '<span class="muted">off</span>'],
    ['Sign-in lasts', esc(c.session_ttl || '12h')],
    ['See every chat session', policy.chat && policy.chat.see_all ? `groups ${tags(policy.chat.see_all)}` : '<span class="muted">nobody: each principal sees its own</span>'],
    ['Failed sign-ins', policy.limits && policy.limits.auth_failures_per_minute != null
      ? `${esc(policy.limits.auth_failures_per_minute)} a minute per address, then 429` : undefined],
  ]);
  renderRules(policy, whoami);
  const nets = policy.networks && Object.keys(policy.networks).length
    ? Object.entries(policy.networks).map(([k, v]) => `<b>${esc(k)}</b> ${tags(v)}`).join('<br>') : undefined;
  dl(checksEl, [
    ['Allowed hosts', list(policy.allowed_hosts, 'default: the names of the bind address')],
    ['Allowed origins', list(policy.allowed_origins, 'same-host')],
    ['Trusted proxies', list(policy.trusted_proxies, 'none')],
    ['Networks', nets],
  ]);
}

export function mount() {
  you = document.getElementById('access-you');
  who = document.getElementById('access-who');
  summaryEl = document.getElementById('access-summary');
  checksEl = document.getElementById('access-checks');
  tbody = document.querySelector('#access-rules tbody');
  document.getElementById('access-refresh').addEventListener('click', load);
  feed.subscribe((ev) => {
    const reloads = ['policy.reloaded', 'tls.reloaded', 'upstream.state'];
    if (ev && reloads.includes(ev.type) && !document.getElementById('page-access').hidden) load();
  });
}

export function show() {
  load();
}

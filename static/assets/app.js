// The dashboard shell: sidebar, page router, who-am-I line, sign-out.
//
// `/`, `/chat`, `/sessions`, `/events` and `/access` all serve this page;
// the path picks the section. Pages are mounted on first visit and kept
// (the chat terminal keeps its session while you look at other pages).

import { api, BASE, esc, principalText } from './lib/api.js';
import * as feed from './lib/feed.js';
import { setNavigator } from './lib/nav.js';
import * as chat from './pages/chat.js';
import * as sessions from './pages/sessions.js';
import * as events from './pages/events.js';
import * as access from './pages/access.js';

const PAGES = { chat, sessions, events, access };
const mounted = new Set();
let current = null;

function pageOf(pathname) {
  const local = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  const name = local.replace(/^\/+|\/+$/g, '') || 'chat';
  return PAGES[name] ? name : 'chat';
}

function show(name) {
  if (current === name) {
    PAGES[name].show?.();
    return;
  }
  if (current) {
    document.getElementById(`page-${current}`).hidden = true;
    PAGES[current].hide?.();
  }
  current = name;
  const el = document.getElementById(`page-${name}`);
  el.hidden = false;
  if (!mounted.has(name)) {
    mounted.add(name);
    PAGES[name].mount(el);
  }
  PAGES[name].show?.();
  document.title = `${el.dataset.title} · dashgate`;
  document.getElementById('topbar-title').textContent = el.dataset.title;
  for (const a of document.querySelectorAll('.nav')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Go to a page of the dashboard without reloading (`/chat?session=…`). */
function navigate(href) {
  const url = new URL(href.startsWith('/') ? BASE + href : href, location.href);
  if (url.pathname + url.search !== location.pathname + location.search) {
    history.pushState(null, '', url.pathname + url.search);
  }
  show(pageOf(url.pathname));
  drawer(false);
}

function drawer(open) {
  document.getElementById('sidebar').classList.toggle('open', open);
  document.getElementById('scrim').hidden = !open;
  document.getElementById('nav-toggle').setAttribute('aria-expanded', String(open));
}

async function who() {
  const el = document.getElementById('who');
  try {
    const w = await api('/api/whoami');
    el.innerHTML = `You are <b>${esc(principalText(w.principal))}</b> from <b>${esc(w.client_ip)}</b>`;
    document.getElementById('logout').hidden = w.principal.kind === 'anonymous';
  } catch (e) {
    el.innerHTML = e.status === 401 ? '<b>Not signed in</b>' : esc(e.reason ? `whoami: ${e.reason}` : '');
    document.getElementById('logout').hidden = true;
  }
}

async function logout() {
  try { await api('/api/logout', { method: 'POST' }); } catch { /* signed out either way */ }
  sessionStorage.clear();
  location.assign(`${BASE}/login`);
}

function init() {
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a[data-page]');
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(a.getAttribute('href'));
  });
  addEventListener('popstate', () => show(pageOf(location.pathname)));
  document.getElementById('nav-toggle').addEventListener('click', () => {
    drawer(!document.getElementById('sidebar').classList.contains('open'));
  });
  document.getElementById('scrim').addEventListener('click', () => drawer(false));
  addEventListener('keydown', (e) => { if (e.key === 'Escape') drawer(false); });
  document.getElementById('logout').addEventListener('click', logout);
  setNavigator(navigate);
  feed.start();
  feed.subscribe((ev) => { if (ev && ev.type === 'policy.reloaded') who(); });
  addEventListener('dashgate:signed-out', who);
  who();
  show(pageOf(location.pathname));
}

init();

// The hermes dashboard's page as the browser tests drive it, behind nginx
// (nginx-hermes.test.mjs) and behind dashgate (upstream-hermes.test.mjs):
// a page that records its WebSocket handshakes, and the sockets and fetches
// made from inside it, as hermes's own single-page app makes them.

import assert from 'node:assert/strict';
import { until } from './harness.mjs';

/**
 * A page of CONTEXT whose WebSocket handshakes are recorded from the
 * DevTools protocol: `page.handshakes` is a list of `{ url, path, status }`,
 * 101 when the socket opened, else the HTTP status of the refusal (chromium
 * reports a refused handshake only as "Unexpected response code: N"; the
 * page's own `WebSocket` sees just close 1006); `page.closed` lists the URLs
 * of sockets that closed; `page.terminal()` is the chat terminal's text.
 */
export async function recordingPage(context) {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const urls = new Map();
  const open = new Map();
  page.handshakes = [];
  page.closed = [];
  const record = (id, status, detail = '') => {
    const url = urls.get(id);
    if (!url) return;
    urls.delete(id);
    if (status === 101) open.set(id, url);
    page.handshakes.push({ url, path: new URL(url).pathname, status, detail });
  };
  cdp.on('Network.webSocketCreated', (e) => urls.set(e.requestId, e.url));
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => record(e.requestId, e.response.status));
  cdp.on('Network.webSocketFrameError', (e) => {
    const m = e.errorMessage.match(/Unexpected response code: (\d+)/);
    record(e.requestId, m ? Number(m[1]) : 0, e.errorMessage);
  });
  cdp.on('Network.webSocketClosed', (e) => { if (open.has(e.requestId)) page.closed.push(open.get(e.requestId)); });
  page.statuses = (path) => page.handshakes.filter((h) => h.path === path).map((h) => h.status);
  page.text = () => page.locator('body').innerText();
  page.terminal = () => page.locator('.hermes-chat-xterm-host .xterm-rows').innerText();
  return page;
}

/** Open PATH?QUERY as a WebSocket from the page; resolves with what the page can see. */
export function openFromPage(page, path, query) {
  return page.evaluate(([path, query]) => new Promise((resolve) => {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}?${query}`;
    const ws = new WebSocket(url);
    const t = setTimeout(() => { ws.close(); resolve({ url, opened: false, code: 'timeout' }); }, 10_000);
    ws.onopen = () => { clearTimeout(t); ws.close(1000); resolve({ url, opened: true }); };
    ws.onclose = (e) => { clearTimeout(t); resolve({ url, opened: false, code: e.code }); };
  }), [path, query]);
}

/** The query each socket needs (hermes's own token, as the page sends it). */
export function query(path, token) {
  const channel = `chat-probe${Date.now()}`;
  return path === '/api/ws' ? `token=${token}` : `channel=${channel}&token=${token}`;
}

/** GET PATH from the page (same origin, as the SPA's own fetches). */
export function fetchFromPage(page, path, headers = {}) {
  return page.evaluate(async ([path, headers]) => {
    const r = await fetch(path, { headers, signal: AbortSignal.timeout(10_000) });
    return { status: r.status, type: r.headers.get('content-type'), body: (await r.text()).slice(0, 2000) };
  }, [path, headers]);
}

/**
 * Load ORIGIN/chat in PAGE and check what works whatever the front does with
 * WebSockets: the page carries hermes's session token (TOKEN), the SPA
 * renders, and REST answers, 401 without the token and 200 with it, as the
 * SPA sends it. Returns the token the page read.
 */
export async function pageAndRestWork(page, origin, token) {
  const res = await page.goto(`${origin}/chat`, { timeout: 30_000 });
  assert.equal(res.status(), 200);
  assert.match(await res.text(), /window\.__HERMES_SESSION_TOKEN__="/);
  await until(async () => /Sessions/i.test(await page.text()) && /Chat/i.test(await page.text()), 'the hermes UI', 30_000);
  const seen = await page.evaluate(() => window.__HERMES_SESSION_TOKEN__);
  assert.equal(seen, token);
  const status = await fetchFromPage(page, '/api/status');
  assert.equal(status.status, 200, status.body);
  assert.match(status.type, /json/);
  assert.equal((await fetchFromPage(page, '/api/sessions')).status, 401);
  const sessions = await fetchFromPage(page, '/api/sessions', { 'X-Hermes-Session-Token': seen });
  assert.equal(sessions.status, 200, sessions.body);
  return seen;
}

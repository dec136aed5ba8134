// The dashboard in the insecure preset on all interfaces, opened at
// http://127.0.0.2:PORT/ (not the bind address, not localhost): the chat
// terminal runs what is typed, a reload stays in the same session, every
// page renders without a console error, and a page of another origin cannot
// open the chat WebSocket.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, rmSync } from 'node:fs';
import {
  rand, screenshot, startBrowser, startServer, terminalText, typeInTerminal, until, watchedPage,
} from './harness.mjs';

let server;
let ctx;
let page;
let base;
const made = [];

before(async () => {
  server = await startServer(['--insecure', '--host', '0.0.0.0', '--chat-command', 'sh']);
  ctx = await startBrowser();
  base = `http://127.0.0.2:${server.port}`;
});

after(async () => {
  for (const f of made) rmSync(f, { force: true });
  await ctx?.close();
  await server?.stop();
});

test('the chat terminal takes typed commands', async () => {
  page = await watchedPage(ctx);
  await page.goto(`${base}/`);
  await page.locator('#terminal[data-state="open"]').waitFor();
  await until(async () => (await terminalText(page)).trim().length > 0, 'the shell prompt');
  const file = `/tmp/dg-${rand()}`;
  made.push(file);
  await typeInTerminal(page, `touch ${file}`);
  await until(() => existsSync(file), `${file}, made by the typed command`);
  const id = new URL(page.url()).searchParams.get('session');
  assert.ok(id, `the session id is in the address: ${page.url()}`);
  assert.equal(new URL(page.url()).pathname, '/chat');
  await typeInTerminal(page, 'echo "dg-marker-$((6*7))"');
  await until(async () => (await terminalText(page)).includes('dg-marker-42'), 'the echo in the terminal');
  await screenshot(page, 'chat');
});

test('the Events page shows session.created', async () => {
  await page.locator('#sidebar a.nav[data-page="events"]').click();
  assert.equal(new URL(page.url()).pathname, '/events');
  const row = page.locator('#events-list li', { has: page.locator('.ev-type[data-type="session.created"]') });
  await row.first().waitFor();
  await page.locator('#events-type').selectOption('session.created');
  assert.equal(await page.locator('#events-list li .ev-type').count(), await row.count());
  await page.locator('#events-type').selectOption('');
  await screenshot(page, 'events');
});

test('the Sessions page lists the session', async () => {
  await page.locator('#sidebar a.nav[data-page="sessions"]').click();
  const id = await page.evaluate(() => sessionStorage.getItem('dashgate.chat.session'));
  const row = page.locator(`#sessions-table tr[data-id="${id}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), /sh[\s\S]*running/);
  await screenshot(page, 'sessions');
});

test('the Access page says who you are and which rule let you in', async () => {
  await page.locator('#sidebar a.nav[data-page="access"]').click();
  const you = page.locator('#access-you');
  await until(async () => (await you.innerText()).includes('allowed by rule'), 'the whoami sentence');
  assert.match(await you.innerText(), /^You are anonymous from 127\.0\.0\.\d+, allowed by rule “everything is allowed”\.$/);
  assert.match(await page.locator('#access-summary').innerText(), /preset\s+insecure/);
  assert.equal(await page.locator('#access-rules tbody tr').count(), 1);
  assert.match(await page.locator('#access-rules tbody tr.current').innerText(), /everything is allowed/);
  await screenshot(page, 'access');
});

test('a reload stays in the same chat session', async () => {
  await page.locator('#sidebar a.nav[data-page="chat"]').click();
  const before = new URL(page.url()).searchParams.get('session');
  assert.ok(before);
  const attached = page.waitForEvent('websocket', (ws) => ws.url().includes('/api/ws'));
  await page.reload();
  const ws = await attached;
  assert.equal(new URL(ws.url()).searchParams.get('session'), before, ws.url());
  await page.locator('#terminal[data-state="open"]').waitFor();
  // The scrollback of the session is replayed on attach.
  await until(async () => (await terminalText(page)).includes('dg-marker-42'), 'the replayed scrollback');
  assert.equal(new URL(page.url()).searchParams.get('session'), before);
  const file = `/tmp/dg-${rand()}`;
  made.push(file);
  await typeInTerminal(page, `touch ${file}`);
  await until(() => existsSync(file), `${file}, typed after the reload`);
});

test('when the program exits the banner says so and offers a new session', async () => {
  const old = new URL(page.url()).searchParams.get('session');
  await typeInTerminal(page, 'exit 3');
  const line = page.locator('#banner [data-source="chat-session"]');
  await line.waitFor();
  assert.match(await line.innerText(), new RegExp(`session ${old} ended: the program exited with code 3`));
  assert.equal(await page.locator('#terminal').getAttribute('data-state'), 'exited');
  assert.equal(new URL(page.url()).searchParams.get('session'), null, 'the ended session left the address');
  await screenshot(page, 'chat-exited');
  await line.locator('button', { hasText: 'New session' }).click();
  await page.locator('#terminal[data-state="open"]').waitFor();
  await until(() => new URL(page.url()).searchParams.get('session'), 'a new session id');
  assert.notEqual(new URL(page.url()).searchParams.get('session'), old);
  assert.equal(await line.count(), 0, 'the banner line is gone');
  const file = `/tmp/dg-${rand()}`;
  made.push(file);
  await typeInTerminal(page, `touch ${file}`);
  await until(() => existsSync(file), `${file}, typed in the new session`);
});

test('no page errors, console errors or failed requests', () => {
  assert.deepEqual(page.problems, []);
  for (const url of page.sockets) assert.doesNotMatch(url, /token/);
});

test('an address with a session that is gone starts a new one and says so', async () => {
  const other = await watchedPage(ctx);
  await other.goto(`${base}/chat?session=0000000000000000`);
  await other.locator('#terminal[data-state="open"]').waitFor();
  const line = other.locator('#banner [data-source="chat-session"]');
  assert.match(await line.innerText(), /session 0000000000000000 no longer exists; started a new one/);
  const id = await until(() => new URL(other.url()).searchParams.get('session'), 'the new id in the address');
  assert.notEqual(id, '0000000000000000');
  await other.close();
});

test('on a phone the terminal fits the screen and the sidebar folds away', async () => {
  const phone = await watchedPage(ctx);
  await phone.setViewportSize({ width: 390, height: 740 });
  await phone.goto(`${base}/chat`);
  await phone.locator('#terminal[data-state="open"]').waitFor();
  await until(async () => (await terminalText(phone)).trim().length > 0, 'the prompt on the phone');
  assert.equal(await phone.locator('#sidebar').isVisible(), true); // in the DOM, off screen
  const box = await phone.locator('#sidebar').boundingBox();
  assert.ok(box.x + box.width <= 0, `the sidebar is off screen: ${JSON.stringify(box)}`);
  const screen = await phone.locator('#terminal .xterm-screen').boundingBox();
  assert.ok(screen.x >= 0 && screen.x + screen.width <= 390, `terminal width fits: ${JSON.stringify(screen)}`);
  assert.ok(screen.y + screen.height <= 740, `terminal height fits: ${JSON.stringify(screen)}`);
  const scroll = await phone.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]);
  assert.deepEqual(scroll, [390, 740], 'nothing overflows the viewport');
  assert.equal(await phone.locator('#chat-keys').isVisible(), true);
  await screenshot(phone, 'phone-chat');
  await phone.locator('#nav-toggle').click();
  await until(async () => (await phone.locator('#sidebar').boundingBox()).x === 0, 'the drawer to open');
  await screenshot(phone, 'phone-menu');
  await phone.locator('#sidebar a.nav[data-page="access"]').click();
  await until(async () => { const b = await phone.locator('#sidebar').boundingBox(); return b.x + b.width <= 0; }, 'the drawer to close');
  await until(async () => (await phone.locator('#access-you').innerText()).includes('allowed by rule'), 'Access on the phone');
  await screenshot(phone, 'phone-access');
  assert.deepEqual(phone.problems, []);
  await phone.close();
});

test('a page of another origin cannot open the chat WebSocket', async () => {
  const target = `ws://127.0.0.1:${server.port}/api/ws`;
  const evil = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><title>elsewhere</title><script>
      window.outcome = new Promise((resolve) => {
        const seen = [];
        const ws = new WebSocket(${JSON.stringify(target)});
        ws.onopen = () => seen.push('open');
        ws.onerror = () => seen.push('error');
        ws.onclose = (e) => { seen.push('close ' + e.code); resolve(seen); };
      });
    </script>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.3', r));
  const before = await (await fetch(`http://127.0.0.1:${server.port}/api/sessions`)).json();
  const other = await ctx.newPage();
  try {
    await other.goto(`http://127.0.0.3:${evil.address().port}/`);
    const seen = await other.evaluate(() => window.outcome);
    assert.ok(!seen.includes('open'), `the socket opened: ${seen}`);
    assert.deepEqual(seen, ['error', 'close 1006']);
  } finally {
    await other.close();
    evil.close();
  }
  const denial = await until(() => server.logLines().find((l) => l.reason === 'origin_not_allowed' && l.path === '/api/ws'),
    'the origin_not_allowed line in the server log');
  assert.equal(denial.status, 403);
  const after = await (await fetch(`http://127.0.0.1:${server.port}/api/sessions`)).json();
  assert.equal(after.length, before.length, 'no session was started for the other origin');
});

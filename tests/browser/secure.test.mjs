// The secure preset (the default): a newcomer lands on the sign-in page, a
// wrong token is refused with the server's reason, the printed token signs
// in, the terminal works, and no WebSocket URL carries a token: the HttpOnly
// session cookie does it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
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
  server = await startServer(['--chat-command', 'sh']);
  assert.ok(server.token, 'the server printed an open …?token= line');
  ctx = await startBrowser();
  base = server.url;
});

after(async () => {
  for (const f of made) rmSync(f, { force: true });
  await ctx?.close();
  await server?.stop();
});

test('a newcomer opening / lands on the sign-in page', async () => {
  page = await watchedPage(ctx);
  const r = await page.goto(`${base}/`);
  assert.equal(r.status(), 200);
  const url = new URL(page.url());
  assert.equal(url.pathname, '/login');
  assert.equal(url.searchParams.get('next'), '/');
  await page.locator('#token').waitFor();
  assert.deepEqual(page.problems, [], 'the sign-in page loads only what the secure preset lets through');
  await screenshot(page, 'login');
});

test('a wrong token is refused with the server’s reason', async () => {
  await page.locator('#token').fill('not-the-token');
  await page.locator('#token-form button[type=submit]').click();
  const err = page.locator('#login-error');
  await err.waitFor();
  const text = await err.innerText();
  assert.match(text, /401/);
  assert.match(text, /bad_credential/);
  assert.equal(new URL(page.url()).pathname, '/login');
  await screenshot(page, 'login-refused');
  page.problems.length = 0; // the 401 of /api/login is the point here
});

test('the token signs in and the terminal works over the cookie', async () => {
  await page.locator('#token').fill(server.token);
  await page.locator('#token-form button[type=submit]').click();
  await page.waitForURL((u) => u.pathname === '/' || u.pathname === '/chat');
  await page.locator('#terminal[data-state="open"]').waitFor();
  await until(async () => (await terminalText(page)).trim().length > 0, 'the shell prompt');
  const file = `/tmp/dg-${rand()}`;
  made.push(file);
  await typeInTerminal(page, `touch ${file}`);
  await until(() => existsSync(file), `${file}, made by the typed command`);

  const cookies = await ctx.cookies(base);
  const session = cookies.find((c) => c.name === 'dashgate_session');
  assert.ok(session, 'the session cookie is set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(await page.evaluate(() => document.cookie.includes('dashgate_session')), false);
  await screenshot(page, 'chat-signed-in');
});

test('no WebSocket URL carries a token', async () => {
  const chat = page.sockets.filter((u) => new URL(u).pathname === '/api/ws');
  const events = page.sockets.filter((u) => new URL(u).pathname === '/api/events');
  assert.ok(chat.length >= 1 && events.length >= 1, `sockets seen: ${page.sockets}`);
  for (const u of page.sockets) {
    assert.doesNotMatch(u, /token/i, u);
    assert.ok(!u.includes(server.token), u);
  }
});

test('the Access page names the startup token and the rule', async () => {
  await page.locator('#sidebar a.nav[data-page="access"]').click();
  const you = page.locator('#access-you');
  await until(async () => (await you.innerText()).includes('allowed by rule'), 'the whoami sentence');
  assert.match(await you.innerText(), /^You are the startup token from 127\.0\.0\.1, allowed by rule “everything else needs a credential”\.$/);
  assert.equal(await page.locator('#access-rules tbody tr').count(), 4);
  assert.equal(await page.locator('#logout').isVisible(), true);
  await screenshot(page, 'access-secure');
  assert.deepEqual(page.problems, []);
});

test('signing out ends the sign-in', async () => {
  await page.locator('#logout').click();
  await page.waitForURL((u) => u.pathname === '/login');
  const r = await page.goto(`${base}/sessions`);
  assert.equal(new URL(page.url()).pathname, '/login', `${r.status()} ${page.url()}`);
});

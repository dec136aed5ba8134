// HTTPS in a real browser (SPEC §7): `--tls self-signed`, chromium told to
// trust exactly that certificate by the SHA-256 of its public key
// (`--ignore-certificate-errors-spki-list`), the printed https link signs
// in, the chat runs over wss (terminal output appears), the cookie is
// Secure, and the Access page shows the fingerprint printed at start.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  rand, screenshot, startBrowser, startServer, terminalText, typeInTerminal, until, watchedPage,
} from './harness.mjs';

let server;
let ctx;
let page;
let stateDir;
const made = [];

before(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'dg-state-'));
  server = await startServer(['--tls', 'self-signed', '--state-dir', stateDir, '--chat-command', 'sh']);
  assert.match(server.url, /^https:\/\//, 'the server announces an https URL');
  assert.ok(server.token, 'the server printed an open https://…?token= line');
  const cert = new X509Certificate(readFileSync(join(stateDir, 'tls-cert.pem')));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  const pin = createHash('sha256').update(spki).digest('base64');
  ctx = await startBrowser({ args: [`--ignore-certificate-errors-spki-list=${pin}`] });
});

after(async () => {
  for (const f of made) rmSync(f, { force: true });
  await ctx?.close();
  await server?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

test('the printed https link signs in and the chat works over wss', async () => {
  page = await watchedPage(ctx);
  const r = await page.goto(`${server.url}/?token=${server.token}`);
  assert.equal(r.status(), 200);
  assert.equal(new URL(page.url()).protocol, 'https:');
  assert.equal(new URL(page.url()).searchParams.get('token'), null, 'the token left the address bar');
  await page.locator('#terminal[data-state="open"]').waitFor();
  await until(async () => (await terminalText(page)).trim().length > 0, 'the shell prompt');
  await typeInTerminal(page, 'echo tls-$((6*7))');
  await until(async () => (await terminalText(page)).includes('tls-42'), 'the echoed line in the terminal');
  const file = `/tmp/dg-${rand()}`;
  made.push(file);
  await typeInTerminal(page, `touch ${file}`);
  await until(() => existsSync(file), `${file}, made by the typed command`);

  const chat = page.sockets.filter((u) => new URL(u).pathname === '/api/ws');
  assert.ok(chat.length >= 1, `sockets seen: ${page.sockets}`);
  for (const u of page.sockets) assert.equal(new URL(u).protocol, 'wss:', u);
  const session = (await ctx.cookies(server.url)).find((c) => c.name === 'dashgate_session');
  assert.ok(session, 'the session cookie is set');
  assert.equal(session.secure, true);
  assert.deepEqual(page.problems, []);
  await screenshot(page, 'tls-chat');
});

test('the Access page shows the fingerprint printed at start', async () => {
  const printed = server.stdout.match(/tls certificate sha256 (\S+)/)[1];
  const der = new X509Certificate(readFileSync(join(stateDir, 'tls-cert.pem'))).raw;
  const hex = createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g).join(':');
  assert.equal(printed, hex);
  await page.goto(`${server.url}/access`);
  const fp = page.locator('#access-tls-fingerprint');
  await fp.waitFor();
  assert.equal(await fp.innerText(), printed);
  await screenshot(page, 'tls-access');
});

// A sign-in whose credential is revoked under an open chat: the browser
// signed in with a named token, the policy is rewritten without that token
// and reloaded (SIGHUP), and the banner says the sign-in ended because the
// credential was removed or changed (close 4401 "credential revoked"), and
// offers to sign in again, which works with a token that is still listed.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import {
  policyFile, screenshot, startBrowser, startServer, terminalText, until, watchedPage,
} from './harness.mjs';

const sha = (t) => createHash('sha256').update(t).digest('hex');
const policy = (tokens) => `version: 1
extends: secure
credentials:
  tokens:
${tokens.map((t) => `    - { name: ${t}, sha256: "${sha(`${t}-token`)}" }`).join('\n')}
`;

let server;
let ctx;
let file;

before(async () => {
  file = policyFile(policy(['ci', 'ops']));
  server = await startServer(['--chat-command', 'sh', '--policy', file]);
  ctx = await startBrowser();
});

after(async () => {
  await ctx?.close();
  await server?.stop();
});

test('a revoked token’s sign-in is shown on the banner with what to do', async () => {
  const page = await watchedPage(ctx);
  await page.goto(`${server.url}/chat`);
  await page.waitForURL((u) => u.pathname === '/login');
  await page.locator('#token').fill('ci-token');
  await page.locator('#token-form button[type=submit]').click();
  await page.waitForURL((u) => u.pathname === '/chat');
  await page.locator('#terminal[data-state="open"]').waitFor();
  await until(async () => (await terminalText(page)).trim().length > 0, 'the shell prompt');

  // The token is removed from the policy, and the policy reloaded.
  writeFileSync(file, policy(['ops']));
  server.child.kill('SIGHUP');

  const line = page.locator('#banner [data-source="chat"]');
  await until(async () => (await line.count()) && /4401/.test(await line.innerText()), 'the 4401 banner');
  const text = await line.innerText();
  assert.match(text, /Chat closed by the server: 4401 credential revoked/);
  assert.match(text, /your sign-in ended because the token or password it was made with was removed or changed/);
  assert.match(text, /sign in again/);
  assert.doesNotMatch(text, /Retrying/);
  assert.equal(await line.getAttribute('data-level'), 'error');
  const again = line.locator('a', { hasText: 'Sign in again' });
  assert.match(await again.getAttribute('href'), /^\/login\?next=%2Fchat/);
  await screenshot(page, 'banner-revoked');
  // The server said the same in its log.
  await until(() => server.logLines().some((l) => l.message === 'policy reloaded' && l.sessions_ended === 1),
    'the reload line with sessions_ended');

  // The old cookie is no sign-in any more; a token still listed is.
  const who = await page.evaluate(async () => (await fetch('/api/whoami')).status);
  assert.equal(who, 401);
  await again.click();
  await page.waitForURL((u) => u.pathname === '/login');
  await page.locator('#token').fill('ops-token');
  await page.locator('#token-form button[type=submit]').click();
  await page.waitForURL((u) => u.pathname === '/chat');
  await page.locator('#terminal[data-state="open"]').waitFor();
  await page.close();
});

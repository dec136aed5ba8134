// A refused or closed socket says why in the banner: a policy rule that
// denies the live feed over WebSockets (the browser hides the 403 of the
// handshake; the banner gets the gate's reason and rule from the probe), and
// a policy reload that no longer allows an open chat (close 4403, then the
// refused handshakes), and a sign-in that expires under an open socket
// (close 4401).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import {
  policyFile, screenshot, startBrowser, startServer, terminalText, typeInTerminal, until, watchedPage,
} from './harness.mjs';

let ctx;

before(async () => { ctx = await startBrowser(); });
after(async () => { await ctx?.close(); });

describe('a policy that denies the live feed over WebSockets', () => {
  let server;
  before(async () => {
    server = await startServer(['--host', '0.0.0.0', '--policy', policyFile(`version: 1
extends: insecure
rules:
  - name: no live feed over websockets
    paths: [/api/events]
    transport: ws
    action: deny
`)]);
  });
  after(async () => { await server?.stop(); });

  test('the banner shows the status, the reason and the rule, and retries', async () => {
    const page = await watchedPage(ctx);
    await page.goto(`http://127.0.0.2:${server.port}/events`);
    const line = page.locator('#banner [data-source="events"]');
    await until(async () => (await line.count()) && /rule_deny/.test(await line.innerText()), 'the banner line');
    const text = await line.innerText();
    assert.match(text, /Live events/);
    assert.match(text, /403/);
    assert.match(text, /rule_deny/);
    assert.match(text, /no live feed over websockets/);
    assert.match(text, /Retrying in \d+ s/);
    assert.equal(await line.getAttribute('data-level'), 'error');
    await screenshot(page, 'banner-refused');
    // It really was the handshake that failed, and it is retried with backoff.
    const attempts = page.sockets.filter((u) => u.includes('/api/events')).length;
    await line.locator('button', { hasText: 'Retry now' }).click();
    await until(() => page.sockets.filter((u) => u.includes('/api/events')).length > attempts, 'a new attempt');
    // The browser sees its attempt before the server's log line reaches us.
    const logged = () => server.logLines().filter((l) => l.reason === 'rule_deny' && l.path.startsWith('/api/events'));
    await until(() => logged().length >= 2, 'the second denial in the log');
    const denials = logged();
    assert.ok(denials.length >= 2, `denials logged: ${denials.length}`);
    assert.equal(denials[0].rule, 'no live feed over websockets');
    await page.close();
  });
});

describe('a policy reload that no longer allows the chat', () => {
  const open = `version: 1
extends: insecure
rules:
  - name: nothing to see here
    paths: [/nowhere]
    action: deny
`;
  const closed = `version: 1
extends: insecure
rules:
  - name: chat closed for maintenance
    paths: [/api/ws]
    action: deny
`;
  let server;
  let file;
  before(async () => {
    file = policyFile(open);
    server = await startServer(['--host', '0.0.0.0', '--chat-command', 'sh', '--policy', file]);
  });
  after(async () => { await server?.stop(); });

  // Rewrite the policy, SIGHUP, and wait until the gate decides /api/ws
  // the new way.
  const reload = async (text, allowed) => {
    writeFileSync(file, text);
    server.child.kill('SIGHUP');
    await until(async () => {
      const r = await fetch(`http://127.0.0.1:${server.port}/api/whoami?path=/api/ws&transport=ws`);
      return (await r.json()).check.allowed === allowed;
    }, 'the reloaded policy');
  };

  test('the open terminal is closed with 4403 and the rule, then reconnects when allowed again', async () => {
    const page = await watchedPage(ctx);
    await page.goto(`http://127.0.0.2:${server.port}/chat`);
    await page.locator('#terminal[data-state="open"]').waitFor();
    await until(async () => (await terminalText(page)).trim().length > 0, 'the shell prompt');
    const id = new URL(page.url()).searchParams.get('session');
    await typeInTerminal(page, 'echo "dg-once-$((1+1))"');
    await until(async () => (await terminalText(page)).includes('dg-once-2'), 'the echo');

    await reload(closed, false);
    const line = page.locator('#banner [data-source="chat"]');
    await until(async () => (await line.count()) && /4403/.test(await line.innerText()), 'the 4403 banner');
    assert.match(await line.innerText(), /Chat closed by the server: 4403 chat closed for maintenance/);
    // The next attempt is refused at the handshake: the probe names the rule.
    await until(async () => /rule_deny/.test(await line.innerText()), 'the refused reconnect', 15_000);
    assert.match(await line.innerText(), /refused by the server: 403 rule_deny by rule “chat closed for maintenance”/);
    await screenshot(page, 'banner-reload');

    await reload(open, true);
    await line.locator('button', { hasText: 'Retry now' }).click();
    await page.locator('#terminal[data-state="open"]').waitFor();
    assert.equal(new URL(page.url()).searchParams.get('session'), id, 'back in the same session');
    await until(async () => /reconnected/.test(await line.innerText()), 'the reconnected note');
    // The scrollback was replayed onto a clean screen, not appended.
    await until(async () => (await terminalText(page)).includes('dg-once-2'), 'the replayed scrollback');
    assert.equal((await terminalText(page)).split('dg-once-2').length - 1, 1);
    await page.close();
  });
});

describe('a sign-in that expires under an open socket', () => {
  let server;
  before(async () => {
    server = await startServer(['--policy', policyFile(`version: 1
extends: secure
credentials:
  session_ttl: 3s
`)]);
  });
  after(async () => { await server?.stop(); });

  test('the banner shows close 4401 and offers to sign in again', async () => {
    const page = await watchedPage(ctx);
    await page.goto(`${server.url}/events?token=${server.token}`);
    assert.equal(new URL(page.url()).search, '', 'the token left the address bar');
    await page.locator('#events-list .ev-type[data-type="client.connected"]').first().waitFor();
    const line = page.locator('#banner [data-source="events"]');
    await until(async () => (await line.count()) && /4401/.test(await line.innerText()), 'the 4401 banner', 10_000);
    const text = await line.innerText();
    assert.match(text, /closed by the server: 4401 session expired/);
    assert.doesNotMatch(text, /Retrying/);
    const signIn = line.locator('a', { hasText: 'Sign in' });
    assert.equal(await signIn.getAttribute('href'), '/login?next=%2Fevents');
    await screenshot(page, 'banner-expired');
    await signIn.click();
    await page.waitForURL((u) => u.pathname === '/login');
    await page.locator('#token').fill(server.token);
    await page.locator('#token-form button[type=submit]').click();
    await page.waitForURL((u) => u.pathname === '/events');
    await page.locator('#events-list .ev-type[data-type="client.connected"]').first().waitFor();
    await page.close();
  });
});

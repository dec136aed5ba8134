// A read-only viewer of someone else's chat session (SPEC §2.5): ana (ops)
// starts a shell and types; vic (viewers: `access: read`, and named in
// `chat.see_all`) attaches to it in another browser. vic's terminal shows
// the read-only badge and ana's typing live; ana's Sessions page shows vic
// watching; vic's Access page says who it is, its groups and its access.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  policyFile, screenshot, startBrowser, startServer, terminalText, typeInTerminal, until, watchedPage,
} from './harness.mjs';

const sha = (t) => createHash('sha256').update(t).digest('hex');
const policy = `version: 1
extends: secure
credentials:
  tokens:
    - { name: ana, sha256: "${sha('ana-token')}", groups: [ops] }
    - { name: vic, sha256: "${sha('vic-token')}", groups: [viewers] }
chat:
  see_all: [viewers]
rules:
  - { name: viewers watch, groups: [viewers], access: read, action: authenticate }
`;

let server;
let anaCtx;
let vicCtx;
let ana;
let vic;
let id;

before(async () => {
  server = await startServer(['--chat-command', 'sh', '--policy', policyFile(policy)]);
  anaCtx = await startBrowser();
  vicCtx = await startBrowser();
});

after(async () => {
  await anaCtx?.close();
  await vicCtx?.close();
  await server?.stop();
});

test('the owner starts a shell', async () => {
  ana = await watchedPage(anaCtx);
  await ana.goto(`${server.url}/chat?token=ana-token`);
  await ana.waitForURL((u) => u.pathname === '/chat' && !u.searchParams.has('token'));
  await ana.locator('#terminal[data-state="open"]').waitFor();
  await until(async () => (await terminalText(ana)).trim().length > 0, 'the shell prompt');
  id = await until(() => ana.evaluate(() => sessionStorage.getItem('dashgate.chat.session')), 'the session id');
  assert.equal(await ana.locator('#chat-readonly').isVisible(), false, 'the owner is not read-only');
});

test('the viewer’s terminal shows the read-only badge and the owner’s typing', async () => {
  vic = await watchedPage(vicCtx);
  await vic.goto(`${server.url}/chat?session=${id}&token=vic-token`);
  await vic.waitForURL((u) => u.pathname === '/chat' && !u.searchParams.has('token'));
  await vic.locator('#terminal[data-state="open"]').waitFor();
  const badge = vic.locator('#chat-readonly');
  await badge.waitFor({ state: 'visible' });
  assert.equal((await badge.innerText()).trim().toLowerCase(), 'read-only');
  assert.equal(await vic.evaluate(() => sessionStorage.getItem('dashgate.chat.session')), id, 'attached to ana’s session');
  assert.equal(await vic.locator('#chat-end').isDisabled(), true, 'a viewer cannot end the session');
  assert.equal(await vic.locator('#chat-new').isDisabled(), true, 'nor start one');

  await typeInTerminal(ana, 'echo typed-by-ana-$((6*7))');
  await until(async () => (await terminalText(vic)).includes('typed-by-ana-42'), 'ana’s typing on vic’s terminal');
  // vic's own keys go nowhere: the line never shows up on ana's terminal.
  await typeInTerminal(vic, 'echo typed-by-vic-$((7*7))');
  await typeInTerminal(ana, 'echo after-$((5*5))');
  await until(async () => (await terminalText(ana)).includes('after-25'), 'ana’s second line');
  assert.doesNotMatch(await terminalText(ana), /typed-by-vic/);
  assert.deepEqual(vic.problems, [], 'nothing went red in the viewer’s console');
  await screenshot(vic, 'viewer-read-only');
});

test('the owner’s Sessions page shows who is watching', async () => {
  await ana.locator('#sidebar a.nav[data-page="sessions"]').click();
  const row = ana.locator(`#sessions-table tr[data-id="${id}"]`);
  await row.waitFor();
  assert.equal((await row.locator('td.owner').innerText()).trim(), 'ana');
  const watching = row.locator('td.watchers');
  await until(async () => /vic\s*read-only/.test(await watching.innerText()), 'vic among the watchers');
  assert.match(await watching.innerText(), /ana/);
  await screenshot(ana, 'sessions-watchers');
});

test('the viewer’s Access page shows its principal, groups and access', async () => {
  await vic.locator('#sidebar a.nav[data-page="access"]').click();
  const who = vic.locator('#access-who');
  await until(async () => (await who.innerText()).includes('Principal'), 'the principal line');
  const text = await who.innerText();
  assert.match(text, /Principal vic, groups viewers; access given by the rule: read-only/);
  assert.match(await vic.locator('#access-you').innerText(), /allowed by rule “viewers watch”/);
  await screenshot(vic, 'access-read-only');
  assert.deepEqual(ana.problems, [], 'nothing went red in the owner’s console');
});

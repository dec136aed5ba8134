// DNS rebinding, as the browser sees it: the dashboard bound to 0.0.0.0 in
// the insecure preset, opened under a name that resolves to it
// (`rebind.test`, mapped to 127.0.0.1 by chromium's --host-resolver-rules,
// as an attacker's DNS would). The page is refused with the host named and
// the way to allow it; with `--allowed-host rebind.test` the chat works; and
// a page already open when a reload stops allowing its name shows the same
// refusal on the banner.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import {
  policyFile, screenshot, startBrowser, startServer, terminalText, typeInTerminal, until, watchedPage,
} from './harness.mjs';

const NAME = 'rebind.test';
const HINT = `Host '${NAME}' is not allowed: add it with --allowed-host ${NAME}, DASHGATE_ALLOWED_HOSTS or allowed_hosts in the policy`;

let ctx;

before(async () => {
  // The harness's own arguments, plus the name mapped to loopback.
  ctx = await startBrowser({
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--host-resolver-rules=MAP ${NAME} 127.0.0.1`,
    ],
  });
});
after(async () => { await ctx?.close(); });

describe('a name the server was not told about', () => {
  let server;
  before(async () => {
    server = await startServer(['--insecure', '--host', '0.0.0.0', '--chat-command', 'sh']);
  });
  after(async () => { await server?.stop(); });

  test('the page is refused, naming the host and how to allow it', async () => {
    const page = await watchedPage(ctx);
    const res = await page.goto(`http://${NAME}:${server.port}/`);
    assert.equal(res.status(), 403);
    const text = await page.locator('body').innerText();
    assert.match(text, /host_not_allowed/);
    assert.ok(text.includes(HINT), text);
    await screenshot(page, 'host-refused-page');
    // The UI never loaded, so no socket was even tried.
    assert.equal(page.sockets.length, 0);
    await until(() => server.logLines().some((l) => l.reason === 'host_not_allowed' && l.path === '/'), 'the denial in the log');
    // The same server under an address works.
    await page.goto(`http://127.0.0.1:${server.port}/chat`);
    await page.locator('#terminal[data-state="open"]').waitFor();
    await page.close();
  });
});

describe('with --allowed-host rebind.test', () => {
  let server;
  before(async () => {
    server = await startServer(['--insecure', '--host', '0.0.0.0', '--chat-command', 'sh', '--allowed-host', NAME]);
  });
  after(async () => { await server?.stop(); });

  test('the chat works under that name', async () => {
    const page = await watchedPage(ctx);
    await page.goto(`http://${NAME}:${server.port}/chat`);
    await page.locator('#terminal[data-state="open"]').waitFor();
    await until(async () => (await terminalText(page)).trim().length > 0, 'the shell prompt');
    await typeInTerminal(page, 'echo "dg-host-$((20+3))"');
    await until(async () => (await terminalText(page)).includes('dg-host-23'), 'the echo');
    assert.equal(new URL(page.url()).host, `${NAME}:${server.port}`);
    await screenshot(page, 'host-allowed-chat');
    await page.close();
  });
});

describe('a reload that stops allowing the page’s name', () => {
  const listed = `version: 1
extends: insecure
allowed_hosts: [${NAME}, localhost, 127.0.0.1]
`;
  const unlisted = `version: 1
extends: insecure
`;
  let server;
  let file;
  before(async () => {
    file = policyFile(listed);
    server = await startServer(['--host', '0.0.0.0', '--chat-command', 'sh', '--policy', file]);
  });
  after(async () => { await server?.stop(); });

  test('the banner shows the refused host and how to allow it', async () => {
    const page = await watchedPage(ctx);
    await page.goto(`http://${NAME}:${server.port}/chat`);
    await page.locator('#terminal[data-state="open"]').waitFor();

    writeFileSync(file, unlisted);
    server.child.kill('SIGHUP');
    const line = page.locator('#banner [data-source="chat"]');
    await until(async () => (await line.count()) && (await line.innerText()).includes(HINT), 'the refusal on the banner', 15_000);
    const text = await line.innerText();
    assert.match(text, /Chat refused by the server: 403 host_not_allowed/);
    assert.equal(await line.getAttribute('data-level'), 'error');
    await screenshot(page, 'banner-host');
    await page.close();
  });
});

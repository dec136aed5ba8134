// The Access page in upstream mode (SPEC §6): the upstream's URL and state,
// and the process dashgate runs with --upstream-command (its pid, its
// restarts, the last error). Killing the upstream shows on the open page
// (an `upstream.state` event reloads it): down or starting, then up again
// with one restart. The upstream: `python3 -m http.server` on loopback.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { screenshot, startBrowser, startServer, until, watchedPage } from './harness.mjs';

let server;
let ctx;
let port;

const freePort = () => new Promise((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
});

before(async () => {
  port = await freePort();
  server = await startServer([
    '--insecure', '--upstream', `http://127.0.0.1:${port}`,
    '--upstream-command', `python3 -m http.server --bind 127.0.0.1 ${port}`,
  ]);
  ctx = await startBrowser();
});

after(async () => {
  await ctx?.close();
  await server?.stop();
});

const status = async () => (await fetch(`${server.url}/.dashgate/api/status`)).json();

test('the Access page shows the supervised upstream, its restart and its state', async () => {
  await until(async () => (await status()).upstream.state === 'up', 'the upstream up');
  const page = await watchedPage(ctx);
  await page.goto(`${server.url}/.dashgate/access`);
  const state = page.locator('#access-upstream-state');
  await state.waitFor();
  assert.equal(await state.innerText(), 'up');
  const { pid } = (await status()).upstream;
  const row = page.locator('#access-summary dd', { has: state });
  const text = await row.innerText();
  assert.match(text, new RegExp(`http://127\\.0\\.0\\.1:${port}`));
  assert.match(text, new RegExp(`run by dashgate: python3, pid ${pid}, restarts 0`));
  await screenshot(page, 'upstream-access-up');

  process.kill(pid, 'SIGKILL');
  // The open page follows the upstream.state events, no reload by hand.
  await until(async () => ['down', 'starting'].includes(await state.innerText()), 'down or starting on the page');
  await until(async () => /restarts 1/.test(await row.innerText()) && (await state.innerText()) === 'up', 'up again after one restart', 20_000);
  const after = await row.innerText();
  assert.match(after, /last error python3 exited \(signal: 9 \(SIGKILL\)\)/);
  assert.doesNotMatch(after, new RegExp(`pid ${pid},`));
  await screenshot(page, 'upstream-access-restarted');
  assert.deepEqual(page.problems, []);
});

// Why not just nginx (docs/upstream.md): the real hermes dashboard
// (hermes-agent 0.19.0 on 127.0.0.1, as its users run it) behind Debian's
// nginx with the reverse-proxy config people copy, opened in chromium from a
// host name that is not loopback (hermes.test, mapped to 127.0.0.1 with
// --host-resolver-rules). The page and REST answer 200 and every WebSocket
// (/api/ws, /api/events, /api/pty) answers 403: hermes checks Host and Origin
// on WebSockets only, and nginx passes the browser's Origin through. From
// http://127.0.0.1 through the same nginx the same sockets open. Two more
// configs for the doc: `Host $host` (400 everywhere) and the rewrite hermes
// needs (Origin set to its own; then they open from hermes.test too).
//
// Needs `make deps-hermes deps-nginx`; without hermes it fails, never skips.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { screenshot, startBrowser, until } from './harness.mjs';
import { plainProxyLocation, rawUpgrade, startHermes, startNginx } from './peers.mjs';
import { fetchFromPage, openFromPage, pageAndRestWork, query, recordingPage } from './hermes-page.mjs';

const NAME = 'hermes.test';
const SOCKETS = ['/api/ws', '/api/events', '/api/pty'];

let hermes;
let ctx;

before(async () => {
  hermes = await startHermes();
  ctx = await startBrowser({
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--host-resolver-rules=MAP ${NAME} 127.0.0.1`,
    ],
  });
});
after(async () => {
  await ctx?.close();
  await hermes?.stop();
});

describe('hermes behind nginx, the config people copy (Upgrade forwarded, Host nginx\'s default, Origin passed)', () => {
  let nginx;
  before(async () => { nginx = await startNginx(plainProxyLocation(hermes.port)); });
  after(async () => { await nginx?.stop(); });

  test(`from http://${NAME}: the page and REST answer 200, every WebSocket 403`, async () => {
    const page = await recordingPage(ctx);
    const origin = `http://${NAME}:${nginx.port}`;
    const token = await pageAndRestWork(page, origin, hermes.token);

    // The page's own sockets: each tried, each refused with 403, none opened.
    await until(() => SOCKETS.every((p) => page.statuses(p).length > 0), 'a handshake on each of /api/ws, /api/events, /api/pty', 30_000);
    for (const p of SOCKETS) {
      const statuses = page.statuses(p);
      assert.ok(statuses.every((s) => s === 403), `${p}: handshake statuses ${statuses}`);
    }
    // The UI says what hermes users see.
    await until(async () => /Chat connection interrupted \(code 1006\)/.test(await page.text()), 'the chat banner', 20_000);
    await screenshot(page, 'nginx-hermes-name-refused');

    // The same sockets opened by hand with the token the page has: the page
    // sees close 1006 and no open; the handshake was a 403.
    for (const p of SOCKETS) {
      const r = await openFromPage(page, p, `${query(p, token)}&probe=js`);
      assert.deepEqual([p, r.opened, r.code], [p, false, 1006]);
      await until(() => page.handshakes.find((h) => h.url === r.url), `the handshake of ${r.url}`);
      assert.equal(page.handshakes.find((h) => h.url === r.url).status, 403, `${p} opened from the page`);
    }

    // A raw upgrade with the browser's Host and Origin: the answer is 403
    // (from hermes, through nginx), and nginx logged it as such.
    for (const p of SOCKETS) {
      const r = await rawUpgrade(nginx.port, `${p}?${query(p, token)}`, { Host: `${NAME}:${nginx.port}`, Origin: origin });
      assert.equal(r.status, 403, `${p} raw upgrade: ${r.status} ${r.body}`);
    }
    // nginx writes a request's log line after its answer has gone out, so
    // the last raw upgrade's line may still be on its way.
    const handshakeLines = () => nginx.accessLog().split('\n').filter((l) => /"GET \/api\/(ws|events|pty)\?/.test(l));
    await until(() => handshakeLines().length >= 9, 'nine handshakes in nginx\'s access log', 5000);
    const logged = handshakeLines();
    assert.ok(logged.length >= 9, `nginx logged ${logged.length} handshakes`);
    assert.ok(logged.every((l) => /" 403 /.test(l)), logged.filter((l) => !/" 403 /.test(l)).join('\n'));
    // ... with hermes's token in each line (nginx's default log format keeps the query).
    assert.ok(logged.every((l) => l.includes(`token=${token}`)), 'the token in the access log');
    // hermes's reason is only in its own log.
    await until(() => /origin_mismatch origin=http:\/\/hermes\.test/.test(hermes.guiLog()), 'origin_mismatch in gui.log', 5000);
    await page.close();
  });

  test('from http://127.0.0.1 (a loopback name), through the same nginx, the WebSockets open', async () => {
    const page = await recordingPage(ctx);
    const origin = `http://127.0.0.1:${nginx.port}`;
    const res = await page.goto(`${origin}/chat`, { timeout: 30_000 });
    assert.equal(res.status(), 200);
    await until(() => SOCKETS.every((p) => page.statuses(p).includes(101)), 'a 101 on each of /api/ws, /api/events, /api/pty', 30_000);
    for (const p of SOCKETS) assert.ok(!page.statuses(p).includes(403), `${p}: ${page.statuses(p)}`);
    // The chat terminal shows the hermes TUI's output.
    await until(async () => /Hermes Agent/.test(await page.text()), 'the hermes TUI banner in the chat', 45_000);
    const token = await page.evaluate(() => window.__HERMES_SESSION_TOKEN__);
    assert.equal((await fetchFromPage(page, '/api/status')).status, 200);
    assert.equal((await fetchFromPage(page, '/api/sessions')).status, 401);
    assert.equal((await fetchFromPage(page, '/api/sessions', { 'X-Hermes-Session-Token': token })).status, 200);
    for (const p of SOCKETS) {
      const r = await openFromPage(page, p, `${query(p, token)}&probe=js`);
      assert.equal(r.opened, true, `${p} from the page: ${JSON.stringify(r)}`);
    }
    await screenshot(page, 'nginx-hermes-loopback-works');
    await page.close();
  });
});

describe('hermes behind nginx with `proxy_set_header Host $host` (the browser\'s Host passed)', () => {
  let nginx;
  before(async () => { nginx = await startNginx(plainProxyLocation(hermes.port, 'proxy_set_header Host $host;')); });
  after(async () => { await nginx?.stop(); });

  test(`from http://${NAME}: 400 on the page, REST and WebSockets 403`, async () => {
    const page = await recordingPage(ctx);
    const origin = `http://${NAME}:${nginx.port}`;
    const res = await page.goto(`${origin}/`, { timeout: 30_000 });
    assert.equal(res.status(), 400);
    assert.match(await res.text(), /Invalid Host header/);
    await screenshot(page, 'nginx-hermes-host-passed');
    const status = await fetchFromPage(page, '/api/status');
    assert.equal(status.status, 400, status.body);
    for (const p of SOCKETS) {
      const r = await rawUpgrade(nginx.port, `${p}?${query(p, hermes.token)}`, { Host: `${NAME}:${nginx.port}`, Origin: origin });
      assert.equal(r.status, 403, `${p} raw upgrade: ${r.status} ${r.body}`);
    }
    await page.close();
  });
});

describe('hermes behind nginx with the rewrite it needs (Origin set to hermes\'s own on top)', () => {
  let nginx;
  before(async () => {
    nginx = await startNginx(plainProxyLocation(hermes.port, `proxy_set_header Origin http://127.0.0.1:${hermes.port};`));
  });
  after(async () => { await nginx?.stop(); });

  test(`from http://${NAME}: the page, REST and every WebSocket work`, async () => {
    const page = await recordingPage(ctx);
    const res = await page.goto(`http://${NAME}:${nginx.port}/chat`, { timeout: 30_000 });
    assert.equal(res.status(), 200);
    assert.equal((await fetchFromPage(page, '/api/status')).status, 200);
    await until(() => SOCKETS.every((p) => page.statuses(p).includes(101)), 'a 101 on each of /api/ws, /api/events, /api/pty', 30_000);
    for (const p of SOCKETS) assert.ok(!page.statuses(p).includes(403), `${p}: ${page.statuses(p)}`);
    await until(async () => /Hermes Agent/.test(await page.text()), 'the hermes TUI banner in the chat', 45_000);
    await screenshot(page, 'nginx-hermes-origin-rewritten');
    await page.close();
  });
});

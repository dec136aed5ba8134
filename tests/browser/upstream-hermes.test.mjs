// dashgate in front of hermes (docs/upstream.md): the real hermes dashboard
// (hermes-agent 0.19.0 on 127.0.0.1, as its users run it) behind dashgate in
// upstream mode with the `lan` preset on 0.0.0.0 — the command line of the
// README — opened in chromium from a host name that is not loopback
// (hermes.test, mapped to 127.0.0.1 with --host-resolver-rules, listed with
// --allowed-host). The same host name that gets 403 on every WebSocket
// through nginx (nginx-hermes.test.mjs): here the page, REST and every
// WebSocket work, and the chat terminal shows the hermes TUI and takes keys.
//
// A client outside the LAN: all of 127/8 is loopback, so LAN, in the preset.
// The test makes a network namespace joined to this host by a veth pair on
// TEST-NET-2 (198.51.100.0/24, neither private nor loopback) and runs curl
// and a second chromium inside it: it gets dashgate's sign-in page, never
// the hermes page and its token, until it signs in with the startup token.
//
// Last, a reload whose policy drops the LAN rule closes the open chat socket
// with 4403.
//
// Needs root (for the namespace) and `make deps-hermes`; without either it
// fails saying why, never skips.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CHROMIUM, ROOT, policyFile, rand, screenshot, startBrowser, startServer, until,
} from './harness.mjs';
import { rawUpgrade, startHermes } from './peers.mjs';
import { openFromPage, pageAndRestWork, query, recordingPage } from './hermes-page.mjs';

const NAME = 'hermes.test';
const SOCKETS = ['/api/ws', '/api/events', '/api/pty'];
const LAN = readFileSync(join(ROOT, 'policies/lan.yaml'), 'utf8');
// The lan preset without its one rule: what is left is `secure`.
const NO_LAN = LAN.replace(/\nrules:[\s\S]*$/, '\n');

let hermes;
let ns;
let server;
let file;
let ctx;

/**
 * A network namespace joined to this host by a veth pair: the host side
 * HOST/30, the namespace side PEER/30, both in TEST-NET-2. `run(cmd, args)`
 * runs a command inside it (bounded); `remove()` deletes it (the veth pair
 * goes with it). Throws with the reason when it cannot be made.
 */
function makeNamespace() {
  const id = rand().slice(0, 6);
  const name = `dg-${id}`;
  const [hostIf, nsIf] = [`dgh${id}`, `dgn${id}`];
  const k = Math.floor(Math.random() * 60) + 2;
  const host = `198.51.100.${4 * k + 1}`;
  const peer = `198.51.100.${4 * k + 2}`;
  const ip = (...args) => execFileSync('ip', args, { timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const remove = () => {
    try { ip('netns', 'del', name); } catch {}
    try { ip('link', 'del', hostIf); } catch {}
  };
  try {
    ip('netns', 'add', name);
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
    ip('link', 'set', nsIf, 'netns', name);
    ip('addr', 'add', `${host}/30`, 'dev', hostIf);
    ip('link', 'set', hostIf, 'up');
    ip('-n', name, 'addr', 'add', `${peer}/30`, 'dev', nsIf);
    ip('-n', name, 'link', 'set', nsIf, 'up');
    ip('-n', name, 'link', 'set', 'lo', 'up');
  } catch (e) {
    remove();
    throw new Error('a client outside the LAN needs a network namespace (ip netns add, a veth pair; '
      + `run as root with CAP_NET_ADMIN), and it could not be made: ${e.message}\n${e.stderr ?? ''}`);
  }
  process.once('exit', remove);
  const run = (cmd, args, timeout = 15_000) => new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', name, cmd, ...args], { timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && err.killed) reject(new Error(`${cmd} in ${name} took over ${timeout} ms`));
      else resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
  return { name, host, peer, run, remove };
}

/**
 * `curl` inside the namespace: `{ status, headers, body }` of the answer
 * (`-i`, no redirects followed). ARGS are curl's own.
 */
async function outside(url, args = []) {
  const r = await ns.run('curl', ['-sS', '-i', '--max-time', '10', ...args, url]);
  if (r.code && r.code !== 28) throw new Error(`curl ${url} in ${ns.name}: ${r.code} ${r.stderr}`);
  const text = r.stdout;
  const split = text.indexOf('\r\n\r\n');
  const head = split < 0 ? text : text.slice(0, split);
  const [statusLine, ...lines] = head.split('\r\n');
  const headers = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: split < 0 ? '' : text.slice(split + 4), raw: text };
}

before(async () => {
  hermes = await startHermes();
  ns = makeNamespace();
  file = policyFile(LAN);
  server = await startServer([
    '--upstream', hermes.url, '--host', '0.0.0.0', '--policy', file, '--allowed-host', NAME,
  ]);
  assert.ok(server.token, `no startup-token line: ${server.stdout}`);
  assert.match(server.stdout, /\/\.dashgate\/login\?token=/);
  ctx = await startBrowser({ args: [`--host-resolver-rules=MAP ${NAME} 127.0.0.1`] });
});
after(async () => {
  await ctx?.close();
  await server?.stop();
  await hermes?.stop();
  ns?.remove();
});

/**
 * The hermes page at ORIGIN/chat, in the browser: it loads with hermes's
 * token, REST works, each of its WebSockets answers 101, the chat terminal
 * shows the TUI and echoes what is typed, the events feed is live. Returns
 * the page.
 */
async function hermesWorks(origin, shot, context = ctx) {
  const page = await recordingPage(context);
  const token = await pageAndRestWork(page, origin, hermes.token);

  // The page's own sockets: each answered 101, none refused.
  await until(() => SOCKETS.every((p) => page.statuses(p).includes(101)), 'a 101 on each of /api/ws, /api/events, /api/pty', 30_000);
  for (const p of SOCKETS) assert.ok(page.statuses(p).every((s) => s === 101), `${p}: handshake statuses ${page.statuses(p)}`);

  // The chat terminal shows the hermes TUI (no API key: its setup panel) ...
  await until(async () => /Hermes Agent/.test(await page.terminal()) && /Setup Required/.test(await page.terminal()),
    'the hermes TUI banner and its Setup Required panel in the chat terminal', 45_000);
  // ... and takes typed keys: the TUI's prompt line echoes them. One key
  // at a time, each once the one before is on the screen: the TUI (Ink)
  // itself drops a key now and then when they come 10 ms apart, straight
  // from chromium to hermes as much as through dashgate.
  const typed = `hello-${rand()}`;
  const prompt = async () => (await page.terminal()).split('\n').find((l) => l.includes('❯')) ?? '';
  await page.locator('.hermes-chat-xterm-host .xterm-helper-textarea').focus();
  try {
    for (let n = 1; n <= typed.length; n++) {
      await page.keyboard.type(typed[n - 1]);
      await until(async () => (await prompt()).includes(typed.slice(0, n)), `"${typed.slice(0, n)}" on the TUI's prompt line`, 5000);
    }
  } catch (e) {
    await screenshot(page, `${shot}-typing-failed`);
    throw new Error(`${e.message}\nthe terminal:\n${await page.terminal()}`);
  }
  // The live events feed: /api/events is open and the UI says so.
  await until(async () => /\blive\b/i.test(await page.text()), 'the "live" badge of the events feed', 15_000);
  await screenshot(page, shot);

  // The same sockets opened by hand with the page's token: they open.
  for (const p of SOCKETS) {
    const r = await openFromPage(page, p, `${query(p, token)}&probe=js`);
    assert.equal(r.opened, true, `${p} from the page: ${JSON.stringify(r)}`);
  }
  return page;
}

describe(`hermes behind dashgate (--upstream, --policy lan, --host 0.0.0.0, --allowed-host ${NAME})`, () => {
  test(`from http://${NAME} (the name that gets 403 through nginx): the page, REST and every WebSocket work`, async (t) => {
    const origin = `http://${NAME}:${server.port}`;
    const page = await hermesWorks(origin, 'upstream-hermes-name-works');
    t.diagnostic(`from ${NAME}: ${page.handshakes.map((h) => `${h.path} ${h.status}`).join(', ')}`);
    // A raw upgrade with the browser's Host and Origin: 101 for each.
    for (const p of SOCKETS) {
      const r = await rawUpgrade(server.port, `${p}?${query(p, hermes.token)}`, { Host: `${NAME}:${server.port}`, Origin: origin });
      assert.equal(r.status, 101, `${p} raw upgrade: ${r.status} ${r.body}`);
    }
    // hermes refused nothing: its log has no refusal reason.
    assert.doesNotMatch(hermes.guiLog(), /refused/);
    // The tokens in the WebSocket queries stay out of dashgate's log.
    assert.ok(!server.stderr.includes(hermes.token), 'hermes\'s token in dashgate\'s log');
    await page.close();
  });

  test('from http://127.0.0.1, through the same dashgate: the same', async (t) => {
    const page = await hermesWorks(`http://127.0.0.1:${server.port}`, 'upstream-hermes-loopback-works');
    t.diagnostic(`from 127.0.0.1: ${page.handshakes.map((h) => `${h.path} ${h.status}`).join(', ')}`);
    await page.close();
  });

  test('a client outside the LAN gets dashgate\'s sign-in page, never the hermes token, and the hermes page once signed in', async (t) => {
    const base = `http://${ns.host}:${server.port}`;
    const html = ['-H', 'Accept: text/html,application/xhtml+xml'];
    const leaks = (r) => r.raw.includes('__HERMES_SESSION_TOKEN__') || r.raw.includes(hermes.token);

    // A browser navigation: 303 to dashgate's sign-in page, nothing of hermes.
    const root = await outside(`${base}/`, html);
    assert.equal(root.status, 303, root.raw.slice(0, 500));
    assert.match(root.headers.location, /^\/\.dashgate\/login/);
    assert.ok(!leaks(root));
    // Every other way in: hermes's page paths (any unknown path serves the
    // page), its public REST, hermes's own token in the query or header.
    const tries = [
      ['/chat', html], ['/index.html', html], ['/no/such/page', html], ['/', []], ['/chat', []],
      ['/api/status', []], ['/api/sessions', ['-H', `X-Hermes-Session-Token: ${hermes.token}`]],
      [`/?token=${hermes.token}`, html], [`/chat?token=${hermes.token}`, []],
      ['/', ['-H', `Authorization: Bearer ${hermes.token}`]],
      ['/', [...html, '-H', 'X-Forwarded-For: 127.0.0.1', '-H', 'Host: 127.0.0.1']],
    ];
    for (const [path, args] of tries) {
      const r = await outside(`${base}${path}`, args);
      assert.ok([303, 401].includes(r.status), `${path} ${args.join(' ')}: ${r.status}\n${r.raw.slice(0, 500)}`);
      assert.ok(!leaks(r), `${path} ${args.join(' ')} leaked hermes's token`);
      if (r.status === 303) assert.match(r.headers.location, /^\/\.dashgate\/login/);
      t.diagnostic(`outside: GET ${path.replace(hermes.token, 'T')} ${args.join(' ').replace(hermes.token, 'T')}: ${r.status} ${r.headers.location ?? r.headers['content-type']}`);
    }
    // Its WebSockets: refused before hermes sees them, never a 101.
    for (const p of SOCKETS) {
      const r = await outside(`${base}${p}?${query(p, hermes.token)}`, ['--max-time', '5',
        '-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13',
        '-H', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', '-H', `Origin: ${base}`]);
      assert.equal(r.status, 401, `${p} upgrade from outside: ${r.raw.slice(0, 300)}`);
      t.diagnostic(`outside: upgrade ${p}: ${r.status} ${r.body.slice(0, 120)}`);
      assert.ok(!leaks(r));
    }
    // The sign-in page itself is dashgate's.
    const login = await outside(`${base}${root.headers.location}`, html);
    assert.equal(login.status, 200);
    assert.match(login.body, /id="token-form"/);
    assert.ok(!leaks(login));

    // Signing in with the startup token (the API, as a script would) ...
    const jar = join(mkdtempSync(join(tmpdir(), 'dg-jar-')), 'cookies');
    const signIn = await outside(`${base}/.dashgate/api/login`, ['-c', jar, '-H', 'Content-Type: application/json',
      '-H', `Origin: ${base}`, '--data', JSON.stringify({ token: server.token })]);
    assert.ok(signIn.status >= 200 && signIn.status < 300, signIn.raw.slice(0, 500));
    const signed = await outside(`${base}/`, ['-b', jar, ...html]);
    assert.equal(signed.status, 200, signed.raw.slice(0, 500));
    assert.match(signed.body, /window\.__HERMES_SESSION_TOKEN__="/);
    rmSync(jar, { force: true });

    // ... and in a browser inside the namespace, as a person would: the
    // sign-in page, the startup token, then the hermes page and its chat.
    const dir = mkdtempSync(join(tmpdir(), 'dg-nsbrowser-'));
    const wrapper = join(dir, 'chromium');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns.name} ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const far = await startBrowser({ executablePath: wrapper });
    try {
      const page = await recordingPage(far);
      const res = await page.goto(`${base}/chat`, { timeout: 30_000 });
      await page.waitForURL((u) => u.pathname === '/.dashgate/login', { timeout: 15_000 });
      assert.equal(res.status(), 200);
      assert.match(page.url(), /next=%2Fchat/);
      const seen = await page.content();
      assert.ok(!seen.includes('__HERMES_SESSION_TOKEN__') && !seen.includes(hermes.token), 'the sign-in page has hermes\'s token');
      await page.locator('#token').waitFor({ timeout: 15_000 });
      await screenshot(page, 'upstream-hermes-outside-sign-in');
      await page.locator('#token').fill(server.token);
      await page.locator('#token-form button[type=submit]').click();
      await page.waitForURL((u) => u.pathname === '/chat', { timeout: 15_000 });
      await until(async () => /Hermes Agent/.test(await page.terminal()), 'the hermes TUI in the chat, signed in from outside', 45_000);
      assert.equal(await page.evaluate(() => window.__HERMES_SESSION_TOKEN__), hermes.token);
      await until(() => page.statuses('/api/pty').includes(101), 'the chat socket, signed in from outside', 15_000);
      await screenshot(page, 'upstream-hermes-outside-signed-in');
      await page.close();
    } finally {
      await far.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a reload that drops the LAN rule closes the open chat with 4403', async (t) => {
    const origin = `http://${NAME}:${server.port}`;
    const page = await recordingPage(ctx);
    await page.goto(`${origin}/chat`, { timeout: 30_000 });
    await until(() => page.statuses('/api/pty').includes(101), 'the chat socket', 30_000);
    await until(async () => /Hermes Agent/.test(await page.terminal()), 'the hermes TUI in the chat', 45_000);
    // A chat socket of the page's own making, to read its close code.
    await page.evaluate((q) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${location.host}/api/pty?${q}`);
      ws.binaryType = 'arraybuffer';
      window.probe = { bytes: 0 };
      ws.onmessage = (e) => { window.probe.bytes += e.data.byteLength ?? e.data.length; };
      ws.onopen = () => { ws.send('\x1b[RESIZE:100;30]'); resolve(); };
      ws.onclose = (e) => { window.probe.close = { code: e.code, reason: e.reason }; reject(new Error(`closed ${e.code}`)); };
      setTimeout(() => reject(new Error('no open in 10 s')), 10_000);
    }), query('/api/pty', hermes.token));
    await until(() => page.evaluate(() => window.probe.bytes > 0), 'the TUI\'s first bytes on the probe socket', 30_000);
    const before = page.closed.length;
    const shook = page.handshakes.length;

    writeFileSync(file, NO_LAN);
    server.child.kill('SIGHUP');

    const closed = await until(() => page.evaluate(() => window.probe.close), 'the probe socket closed', 10_000);
    assert.equal(closed.code, 4403, JSON.stringify(closed));
    assert.ok(closed.reason.length > 0, 'a reason with the 4403');
    // The page's own chat terminal and events feed were closed too.
    const own = (path) => page.closed.slice(before).some((u) => new URL(u).pathname === path && !u.includes('chat-probe'));
    await until(() => own('/api/pty') && own('/api/events'), 'the page\'s own /api/pty and /api/events closed', 10_000);
    await until(() => server.logLines().some((l) => l.message === 'policy reloaded'), 'the reload line', 10_000);
    // What the hermes UI shows: the reason dashgate gave, and its events
    // feed closed with the code.
    await until(async () => (await page.text()).includes(closed.reason), `"${closed.reason}" on the hermes page`, 10_000);
    await until(async () => /events feed rejected \(4403\)/.test(await page.text()), 'the events feed\'s 4403 on the hermes page', 10_000);
    t.diagnostic(`after the reload: probe /api/pty closed ${closed.code} "${closed.reason}"; the page's sockets closed: ${
      page.closed.slice(before).map((u) => new URL(u).pathname).join(', ')}; handshakes since: ${
      page.handshakes.slice(shook).map((h) => `${h.path} ${h.status}`).join(', ') || 'none'}`);
    await screenshot(page, 'upstream-hermes-reloaded');
    // From now on the same browser is asked to sign in.
    await page.goto(`${origin}/chat`, { timeout: 30_000 });
    await page.waitForURL((u) => u.pathname === '/.dashgate/login', { timeout: 15_000 });
    assert.ok(!(await page.content()).includes('__HERMES_SESSION_TOKEN__'));
    await page.close();
  });
});

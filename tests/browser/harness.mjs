// Browser-test harness: the real dashgate binary on an ephemeral port, and
// Debian's chromium driven by playwright-core (no downloaded browsers).
//
//   DASHGATE_BIN  the binary (default target/debug/dashgate)
//   CHROMIUM      the browser (default /usr/bin/chromium)

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.DASHGATE_BIN || join(ROOT, 'target/debug/dashgate');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const SHOTS = join(ROOT, 'target/screenshots');

// Servers still running when this process ends (a failed `before`, a
// Ctrl-C, a CI timeout) are killed with it rather than left behind.
const running = new Set();
process.once('exit', () => { for (const c of running) c.kill('SIGKILL'); });
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => { for (const c of running) c.kill('SIGKILL'); process.exit(130); });
}

/** A random name for files and sessions that tests create. */
export const rand = () => randomBytes(6).toString('hex');

/** Wait until `fn()` is truthy (polling), or throw with `what`. */
export async function until(fn, what, timeout = 10_000) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

/**
 * Start `dashgate serve --port 0 ARGS…`; resolves once it printed its
 * `listening on` line (and the `open …?token=` line, when there is one).
 * The log is JSON lines on stderr, kept in `server.log` for assertions.
 */
export async function startServer(args = [], { env = {} } = {}) {
  const child = spawn(BIN, ['serve', '--port', '0', '--log-format', 'json', '--static-dir', join(ROOT, 'static'), ...args], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      SHELL: '/bin/sh',
      RUST_LOG: 'info',
      NO_COLOR: '1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const server = { child, stdout: '', stderr: '', port: 0, token: null, url: null };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { server.stdout += d; });
  child.stderr.on('data', (d) => { server.stderr += d; });
  const exited = new Promise((r) => child.once('exit', (code) => r(code)));
  server.exited = exited;
  await Promise.race([
    until(() => /listening on https?:\/\/\S+\n/.test(server.stdout), 'the listening line'),
    exited.then((code) => { throw new Error(`dashgate exited with ${code}: ${server.stderr}`); }),
  ]);
  const [, scheme, addr] = server.stdout.match(/listening on (https?):\/\/(\S+)\n/);
  server.port = Number(addr.split(':').pop());
  server.url = `${scheme}://${addr}`;
  // The `open` line follows at once when the policy can require a credential.
  await new Promise((r) => setTimeout(r, 100));
  const open = server.stdout.match(/open https?:\/\/\S+\?token=(\S+)/);
  server.token = open ? open[1] : null;
  server.logLines = () => server.stderr.split('\n').filter(Boolean).map((l) => {
    try { return JSON.parse(l); } catch { return { message: l }; }
  });
  server.stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  return server;
}

/** Write a policy file into a fresh temp folder; returns its path. */
export function policyFile(text) {
  const dir = mkdtempSync(join(tmpdir(), 'dg-policy-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'policy.yaml');
  writeFileSync(path, text);
  return path;
}

/**
 * Debian's chromium, headless, in a throw-away profile (a mkdtemp folder,
 * removed by `close()`). Returns the browser context.
 */
export async function startBrowser({ viewport = { width: 1280, height: 800 }, args = [], ...options } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'dg-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...args,
    ],
    ...options,
  });
  const close = context.close.bind(context);
  context.close = async () => {
    await close();
    rmSync(profile, { recursive: true, force: true });
  };
  return context;
}

/**
 * A page that records what would show up red in the browser console:
 * uncaught exceptions, console.error, failed requests. `page.problems`.
 */
export async function watchedPage(context) {
  const page = await context.newPage();
  page.problems = [];
  page.sockets = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') page.problems.push(`console.error: ${m.text()}`); });
  page.on('requestfailed', (r) => page.problems.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) page.problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  page.on('websocket', (ws) => page.sockets.push(ws.url()));
  return page;
}

/** Save a screenshot as target/screenshots/NAME.png. */
export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** The visible text of the terminal (xterm's accessibility-free DOM rows). */
export async function terminalText(page) {
  return page.locator('#terminal .xterm-rows').innerText();
}

/** Type a command line into the chat terminal. */
export async function typeInTerminal(page, line) {
  await page.locator('#terminal .xterm-helper-textarea').focus();
  await page.keyboard.type(line, { delay: 5 });
  await page.keyboard.press('Enter');
}

// The peers dashgate is compared with and put in front of: the real hermes
// dashboard (hermes-agent 0.19.0, installed by `make deps-hermes`) and
// Debian's nginx (`make deps-nginx`), each started on loopback in a temp dir
// of its own and ended with its whole process group.
//
//   HERMES_VENV  the virtualenv (default target/bench/hermes-venv, shared
//                with `make bench`)
//   NGINX        the nginx binary (default /usr/sbin/nginx)

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, until } from './harness.mjs';

const TARGET = process.env.CARGO_TARGET_DIR || join(ROOT, 'target');
export const HERMES_VENV = process.env.HERMES_VENV || join(TARGET, 'bench/hermes-venv');
export const HERMES_LOG = join(TARGET, 'bench/hermes-install.log');
export const NGINX = process.env.NGINX || '/usr/sbin/nginx';

// Process groups still running when this process ends are killed with it.
const groups = new Set();
const killAll = () => { for (const pid of groups) { try { process.kill(-pid, 'SIGKILL'); } catch {} } };
process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { killAll(); process.exit(130); });

/**
 * Spawn CMD ARGS in a process group of its own (hermes starts children: the
 * TUI behind /api/pty). Output is kept in `proc.out` (stdout and stderr
 * interleaved); `stop()` sends SIGTERM to the group, SIGKILL after 5 s.
 */
function spawnGroup(cmd, args, options) {
  const child = spawn(cmd, args, { ...options, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = { child, out: '' };
  groups.add(child.pid);
  for (const s of [child.stdout, child.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d) => { proc.out += d; });
  }
  proc.exited = new Promise((r) => child.once('exit', (code, signal) => r(code ?? signal)));
  // A failed spawn (ENOENT) has no pid and emits 'error' rather than 'exit'.
  child.once('error', (e) => { proc.out += `spawn error: ${e.message}\n`; });
  proc.stop = async () => {
    if (!groups.has(child.pid)) return;
    const signal = (s) => { try { process.kill(-child.pid, s); } catch {} };
    signal('SIGTERM');
    const t = setTimeout(() => signal('SIGKILL'), 5000);
    await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 6000))]);
    clearTimeout(t);
    signal('SIGKILL'); // the rest of the group, if the leader went first
    groups.delete(child.pid);
  };
  return proc;
}

/** Resolves with `what` or rejects when the process exits first or after `timeout` ms. */
function racing(proc, promise, name) {
  return Promise.race([
    promise,
    proc.exited.then((code) => { throw new Error(`${name} exited (${code}) before it was ready:\n${proc.out.slice(-3000)}`); }),
  ]);
}

/** Why hermes is not there, with the end of the install log: tests fail with it, never skip. */
function hermesMissing(bin) {
  let tail = 'no install log';
  try {
    tail = readFileSync(HERMES_LOG, 'utf8').trim().split('\n').slice(-5).join('\n');
  } catch {}
  return new Error(`hermes-agent==0.19.0 is not installed: no ${bin}. Run \`make deps-hermes\` `
    + `(installs it into ${HERMES_VENV}). The end of ${HERMES_LOG}:\n${tail}`);
}

/**
 * `hermes dashboard --no-open --skip-build --host 127.0.0.1 --port 0` with
 * HERMES_HOME in a fresh temp dir, as `benches/load/hermes.rs` starts it.
 * Resolves once it printed `HERMES_DASHBOARD_READY port=N` and served its
 * page: `{ port, url, token, home, out, guiLog(), stop() }`; `token` is the
 * one the page embeds as `window.__HERMES_SESSION_TOKEN__`.
 */
export async function startHermes({ timeout = 90_000, env = {} } = {}) {
  const bin = join(HERMES_VENV, 'bin/hermes');
  if (!existsSync(bin)) throw hermesMissing(bin);
  const home = mkdtempSync(join(tmpdir(), 'dg-hermes-'));
  const proc = spawnGroup(bin, ['dashboard', '--no-open', '--skip-build', '--host', '127.0.0.1', '--port', '0'], {
    cwd: home,
    env: {
      PATH: `${join(HERMES_VENV, 'bin')}:${process.env.PATH}`,
      HOME: home,
      HERMES_HOME: home,
      NO_COLOR: '1',
      TERM: 'xterm-256color',
      ...env,
    },
  });
  const hermes = { proc, home, out: () => proc.out };
  hermes.stop = async () => {
    await proc.stop();
    rmSync(home, { recursive: true, force: true });
  };
  try {
    await racing(proc, until(() => /HERMES_DASHBOARD_READY port=(\d+)/.test(proc.out), 'HERMES_DASHBOARD_READY', timeout), 'hermes dashboard');
    hermes.port = Number(proc.out.match(/HERMES_DASHBOARD_READY port=(\d+)/)[1]);
    hermes.url = `http://127.0.0.1:${hermes.port}`;
    const page = await until(async () => {
      const r = await fetch(`${hermes.url}/`, { signal: AbortSignal.timeout(5000) });
      return r.ok && r.text();
    }, 'the hermes page', 20_000);
    const m = page.match(/__HERMES_SESSION_TOKEN__="([^"]+)"/);
    if (!m) throw new Error(`no __HERMES_SESSION_TOKEN__ in hermes's index.html: ${page.slice(0, 500)}`);
    hermes.token = m[1];
  } catch (e) {
    await hermes.stop();
    throw e;
  }
  /** Where hermes says why it refused a WebSocket (the 403 itself says nothing). */
  hermes.guiLog = () => {
    try { return readFileSync(join(home, 'logs/gui.log'), 'utf8'); } catch { return ''; }
  };
  return hermes;
}

/** A port that was free a moment ago (nginx needs a number; a clash is retried). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** Resolves once 127.0.0.1:PORT accepts a TCP connection. */
function accepts(port) {
  return new Promise((resolve) => {
    const c = connect({ host: '127.0.0.1', port });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/**
 * The reverse-proxy config people copy for a dashboard with WebSockets
 * (nginx's own "WebSocket proxying" recipe): the upgrade forwarded, Host
 * left to nginx's default (`$proxy_host`, the upstream's 127.0.0.1:PORT),
 * Origin passed through untouched, the usual X-Forwarded-* headers.
 * `extra` is added to the location (e.g. the rewrites hermes would need).
 */
export function plainProxyLocation(upstreamPort, extra = '') {
  return `location / {
            proxy_pass http://127.0.0.1:${upstreamPort};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 3600s;${extra ? `\n            ${extra.trim().split('\n').join('\n            ')}` : ''}
        }`;
}

/**
 * Debian's nginx in the foreground (`daemon off; master_process off;`) with
 * its own prefix in a temp dir (config, pid, logs, temp paths), listening on
 * 127.0.0.1:PORT with `location` as its only server's config. Resolves once
 * the port accepts connections: `{ port, url, config, dir, errorLog(),
 * accessLog(), stop() }`.
 */
export async function startNginx(location, { timeout = 10_000 } = {}) {
  if (!existsSync(NGINX)) throw new Error(`no ${NGINX}: run \`make deps-nginx\` (Debian's nginx)`);
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'dg-nginx-'));
    for (const d of ['logs', 'tmp']) mkdirSync(join(dir, d));
    const port = await freePort();
    const config = `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log info;
events { worker_connections 1024; }
http {
    access_log ${dir}/logs/access.log;
    client_body_temp_path ${dir}/tmp/body;
    proxy_temp_path ${dir}/tmp/proxy;
    fastcgi_temp_path ${dir}/tmp/fastcgi;
    uwsgi_temp_path ${dir}/tmp/uwsgi;
    scgi_temp_path ${dir}/tmp/scgi;
    server {
        listen 127.0.0.1:${port};
        server_name _;
        ${location}
    }
}
`;
    writeFileSync(join(dir, 'nginx.conf'), config);
    const proc = spawnGroup(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'logs/error.log')], { cwd: dir });
    const read = (f) => { try { return readFileSync(join(dir, 'logs', f), 'utf8'); } catch { return ''; } };
    const nginx = { proc, port, url: `http://127.0.0.1:${port}`, config, dir, errorLog: () => read('error.log'), accessLog: () => read('access.log') };
    nginx.stop = async () => {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      await racing(proc, until(() => accepts(port), `nginx on 127.0.0.1:${port}`, timeout), 'nginx');
      return nginx;
    } catch (e) {
      lastErr = new Error(`${e.message}\n${nginx.errorLog().slice(-2000)}`);
      await nginx.stop();
      if (!/Address already in use/.test(lastErr.message)) break;
    }
  }
  throw lastErr;
}

/**
 * A raw WebSocket handshake (GET with Upgrade) to 127.0.0.1:PORT PATH with
 * the given headers (Host and Origin as a browser would send them); resolves
 * with `{ status, headers, body }` of the answer, 101 included. Bounded by
 * `timeout` ms.
 */
export function rawUpgrade(port, path, headers, timeout = 10_000) {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': Buffer.from(Array.from({ length: 16 }, () => Math.floor(Math.random() * 256))).toString('base64'),
        ...headers,
      },
      timeout,
    });
    req.once('timeout', () => req.destroy(new Error(`no answer to the upgrade of ${path} within ${timeout} ms`)));
    req.once('error', reject);
    req.once('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: '' });
    });
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.once('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      res.once('error', reject);
    });
    req.end();
  });
}

// Helpers for the deployment test (test/zz-deploy.test.mjs): run docker/entrypoint.sh directly on this
// host with a temporary PREFIX (nginx + supervisord + gateway/worker processes), talk to it through
// nginx, optionally from a chosen loopback source address (127.0.X.1) so that nginx's ip_hash sees
// different clients.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

import { createTRPCClient, createWSClient, superjson, WebSocket, wsLink } from './deps.mjs';
import { closeClient, delay, openRawSocket, REPO, sleep } from './gateway.mjs';

export const ENTRYPOINT = path.join(REPO, 'docker', 'entrypoint.sh');
const VENV_BIN = path.join(REPO, '.venv', 'bin');

/** Absolute path of an executable found in dirs or on PATH, else null. */
export function findExecutable(name, dirs = []) {
  const all = [...dirs, ...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of all) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

/** What the deployment test needs on this host; `skip` is a reason string or false. */
export function deployPrerequisites() {
  const nginx = findExecutable('nginx');
  const supervisord = findExecutable('supervisord', [VENV_BIN]);
  const supervisorctl = findExecutable('supervisorctl', [VENV_BIN]);
  const memmon = findExecutable('memmon', [VENV_BIN]);
  const { DATABASE_URL, KAFKA_BROKERS } = process.env;
  let skip = false;
  if (!DATABASE_URL || !KAFKA_BROKERS) skip = 'DATABASE_URL and KAFKA_BROKERS are not set';
  else if (!nginx) skip = 'nginx is not installed (apt-get install nginx-light)';
  else if (!supervisord || !supervisorctl || !memmon) {
    skip = 'supervisord / memmon are not installed (.venv/bin/pip install supervisor superlance)';
  }
  return { skip, nginx, supervisord, supervisorctl };
}

async function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A base port such that base .. base+count-1 are free (and none is in `avoid`). */
export async function freePortRange(count, avoid = new Set()) {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = !avoid.has(p) && (await portFree(p));
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

/**
 * HTTP GET with an optional source address. Resolves {status, headers, body (decoded), raw}.
 * Never rejects: a connection error gives status 0.
 */
export function httpGet(url, { localAddress, headers = {}, timeoutMs = 5000 } = {}) {
  return new Promise((resolve) => {
    const req = http.get(url, { localAddress, headers, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        let body = raw;
        if (res.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(raw);
        resolve({ status: res.statusCode, headers: res.headers, body: body.toString(), raw });
      });
      res.on('error', () => resolve({ status: 0, headers: {}, body: '', raw: Buffer.alloc(0) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, headers: {}, body: '', raw: Buffer.alloc(0) }));
  });
}

/** True while something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** True if a process with this pid exists. */
export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

const liveStacks = new Set();
process.on('exit', () => {
  for (const s of liveStacks) s.emergencyKill();
});

/**
 * Starts `bash docker/entrypoint.sh` with a temporary PREFIX and waits until nginx, every gateway and
 * every worker answer /health (and nginx's /ready is 200).
 * @param {object} o
 * @param {number} o.instances
 * @param {number} o.workers
 * @param {object} [o.env]  extra environment (DATABASE_URL, KAFKA_TOPICS_PREFIX, ...)
 * @param {number} [o.startTimeoutMs=60000]
 */
export async function startStack({ instances, workers, env = {}, startTimeoutMs = 60_000 }) {
  const prereq = deployPrerequisites();
  // A short PREFIX: the supervisor socket path must stay below the unix socket limit.
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'cgdep-'));
  fs.chmodSync(prefix, 0o755); // nginx workers (nobody, when run as root) traverse it
  const port = await freePortRange(instances);
  const used = new Set(Array.from({ length: instances }, (_, i) => port + i));
  const workerPort = await freePortRange(Math.max(workers, 1), used);
  for (let i = 0; i < workers; i++) used.add(workerPort + i);
  const nginxPort = await freePortRange(1, used);
  const conf = path.join(prefix, 'etc', 'chaingraph', 'supervisord.conf');

  const stack = {
    prefix,
    conf,
    port,
    workerPort,
    nginxPort,
    instances,
    workers,
    base: `http://127.0.0.1:${nginxPort}`,
    log: '',
    proc: null,
    exitInfo: null,
    exited: null,
    childPids: new Set(),
    url(p = '/') {
      return `ws://127.0.0.1:${nginxPort}${p}`;
    },
    get(p, opts) {
      return httpGet(`${stack.base}${p}`, opts);
    },
    /** Runs supervisorctl against this stack; returns {code, stdout, stderr}. */
    ctl(...args) {
      const r = spawnSync(prereq.supervisorctl, ['-c', conf, ...args], { encoding: 'utf8', timeout: 15_000 });
      return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    },
    /** The pid of a supervisord program ("gateways:gateway-1"), 0 when not running. */
    pid(name) {
      const n = Number.parseInt(stack.ctl('pid', name).stdout.trim(), 10);
      return Number.isFinite(n) ? n : 0;
    },
    /** {name: {state, pid}} from `supervisorctl status`. */
    status() {
      const out = {};
      for (const line of stack.ctl('status').stdout.split('\n')) {
        const m = line.match(/^(\S+)\s+(\S+)\s*(?:pid (\d+))?/);
        if (m) out[m[1]] = { state: m[2], pid: m[3] ? Number(m[3]) : 0 };
      }
      return out;
    },
    recordChildren() {
      for (const { pid } of Object.values(stack.status())) if (pid) stack.childPids.add(pid);
    },
    signal(sig) {
      stack.proc?.kill(sig);
    },
    async waitExit(ms) {
      return Promise.race([stack.exited, delay(ms)]);
    },
    /** SIGTERM, wait up to timeoutMs, then kill whatever is left. */
    async stop(timeoutMs = 30_000) {
      if (stack.proc && !stack.exitInfo) {
        stack.recordChildren();
        stack.proc.kill('SIGTERM');
        await stack.waitExit(timeoutMs);
      }
      stack.emergencyKill();
      liveStacks.delete(stack);
    },
    emergencyKill() {
      if (stack.proc && !stack.exitInfo) {
        try {
          stack.proc.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }
      for (const pid of stack.childPids) {
        if (!alive(pid)) continue;
        try {
          process.kill(-pid, 'SIGKILL'); // supervisord puts every child in its own process group
        } catch {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
    },
    removePrefix() {
      fs.rmSync(prefix, { recursive: true, force: true });
    },
  };

  const proc = spawn('bash', [ENTRYPOINT], {
    cwd: REPO,
    env: {
      ...process.env,
      PREFIX: prefix,
      INSTANCES: String(instances),
      WORKERS: String(workers),
      PORT: String(port),
      WORKER_PORT: String(workerPort),
      NGINX_PORT: String(nginxPort),
      LOG_TO_STDOUT: '1',
      VENV_BIN,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  stack.proc = proc;
  liveStacks.add(stack);
  const onData = (chunk) => {
    const s = chunk.toString();
    stack.log += s;
    if (stack.log.length > 400_000) stack.log = stack.log.slice(-200_000);
    if (process.env.CONFORMANCE_VERBOSE) process.stderr.write(`[stack] ${s}`);
  };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  stack.exited = new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      stack.exitInfo = { code, signal, at: Date.now() };
      resolve(stack.exitInfo);
    });
  });

  const deadline = Date.now() + startTimeoutMs;
  // gateways must be ready (PostgreSQL + Kafka reachable), workers alive
  const probes = [
    ...Array.from({ length: instances }, (_, i) => `http://127.0.0.1:${port + i}/ready`),
    ...Array.from({ length: workers }, (_, i) => `http://127.0.0.1:${workerPort + i}/health`),
  ];
  for (;;) {
    if (stack.exitInfo) {
      stack.emergencyKill();
      stack.removePrefix();
      throw new Error(`entrypoint exited (${JSON.stringify(stack.exitInfo)}) before the stack was up:\n${stack.log}`);
    }
    // The processes directly first: requests through nginx to processes that are not listening yet
    // would count as upstream failures (max_fails) and take them out of rotation for fail_timeout.
    const checks = await Promise.all([
      httpGet(`${stack.base}/nginx-health`, { timeoutMs: 1000 }).then((r) => r.status === 200),
      ...probes.map((u) => httpGet(u, { timeoutMs: 2000 }).then((r) => r.status === 200)),
    ]);
    if (checks.every(Boolean) && (await httpGet(`${stack.base}/ready`, { timeoutMs: 2000 })).status === 200) break;
    if (Date.now() > deadline) {
      await stack.stop(5000);
      stack.removePrefix();
      throw new Error(`stack not up within ${startTimeoutMs} ms (checks ${JSON.stringify(checks)}):\n${stack.log}`);
    }
    await sleep(250);
  }
  stack.recordChildren();
  return stack;
}

/** A `ws` WebSocket class whose connections leave from `localAddress` and are recorded in `sockets`. */
export function boundWebSocket(localAddress, sockets = []) {
  return class BoundWebSocket extends WebSocket {
    constructor(address, protocols, options) {
      super(address, protocols ?? [], { ...(options ?? {}), ...(localAddress ? { localAddress } : {}) });
      sockets.push(this);
    }
  };
}

/**
 * The official client (createTRPCClient + wsLink + createWSClient, superjson) connecting from
 * `localAddress`. Extra options go to createWSClient. Returns {client, wsClient, sockets, close()}.
 */
export function makeClientFrom({ url, localAddress, ...wsOptions }) {
  const sockets = [];
  const wsClient = createWSClient({ url, WebSocket: boundWebSocket(localAddress, sockets), ...wsOptions });
  const client = createTRPCClient({ links: [wsLink({ client: wsClient, transformer: superjson })] });
  return {
    client,
    wsClient,
    sockets,
    close: () => closeClient(wsClient, sockets),
  };
}

/** A raw WebSocket (see RawSocket in gateway.mjs) from `localAddress`. */
export async function openRawFrom(url, localAddress, { timeoutMs = 5000 } = {}) {
  const ws = new WebSocket(url, [], localAddress ? { localAddress } : {});
  return openRawSocket(ws, `raw ws open timeout ${url} from ${localAddress}`, timeoutMs);
}

import os from 'node:os';
import fs from 'node:fs';
// Test helpers: start/stop the gateway process, build an official tRPC client, and a raw
// WebSocket for sending arbitrary frames.
//
// Environment:
//   GATEWAY_CMD          command used instead of `<repo>/.venv/bin/twistd -n --pidfile= chaingraph-gw`
//                        (split on whitespace, run with cwd = repo root). `--port <p> --host 127.0.0.1`
//                        and the per-test args are appended. Example:
//                        GATEWAY_CMD="node bench/reference-server.mjs"
//   CONFORMANCE_TARGET   'reference' or 'gateway'; default: 'reference' iff GATEWAY_CMD mentions
//                        reference-server. Against the reference, tests of behaviour the official
//                        server lacks are reported as TODO instead of failing.
//   CONFORMANCE_VERBOSE  =1 to echo the gateway's stdout/stderr while tests run.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before } from 'node:test';
import { createTRPCClient, createWSClient, superjson, WebSocket, wsLink } from './deps.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export { sleep };

/** Rejects with a descriptive error if `promise` does not settle within ms (timer is unref'd). */
export function withTimeout(promise, ms, what = 'operation') {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    timer.unref();
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** Like sleep() but does not keep the process alive (for Promise.race timeouts). */
export function delay(ms, value = null) {
  return new Promise((resolve) => setTimeout(resolve, ms, value).unref());
}

/** True when the suite runs against the reference server (tests for our extras become todo). */
export const AGAINST_REFERENCE = process.env.CONFORMANCE_TARGET
  ? process.env.CONFORMANCE_TARGET === 'reference'
  : /reference-server/.test(process.env.GATEWAY_CMD ?? '');

/** Options for `test()` of a behaviour the official reference server does not have. */
export function beyondReference(reason) {
  return AGAINST_REFERENCE ? { todo: `reference server: ${reason}` } : {};
}

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function baseCommand(command) {
  if (command) return { cmd: command[0], args: command.slice(1) };
  if (process.env.GATEWAY_CMD) {
    const parts = process.env.GATEWAY_CMD.trim().split(/\s+/);
    return { cmd: parts[0], args: parts.slice(1) };
  }
  return {
    cmd: path.join(REPO, '.venv', 'bin', 'twistd'),
    args: ['-n', '--pidfile=', 'chaingraph-gw'],
  };
}

function httpStatus(url, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/**
 * Starts the gateway and waits for GET /health → 200.
 * @param {object} [opts]
 * @param {string[]} [opts.args]   extra command-line args (e.g. ['--config', file])
 * @param {object}   [opts.env]    extra environment variables
 * @param {number}   [opts.port]   fixed port (default: a free one)
 * @param {number}   [opts.startTimeoutMs=20000]
 * @param {string[]} [opts.command] base command instead of GATEWAY_CMD / twistd (e.g. for bench)
 */
export async function startGateway(opts = {}) {
  const port = opts.port ?? (await freePort());
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const gw = {
    port,
    host: '127.0.0.1',
    url: `ws://127.0.0.1:${port}/`,
    httpUrl: `http://127.0.0.1:${port}`,
    proc: null,
    exited: null, // promise of {code, signal} for the current process
    exitInfo: null,
    log: '',
    output() {
      return gw.log;
    },
    /** Sends `signal` and waits for exit (SIGKILL after timeoutMs). */
    async stop(signal = 'SIGTERM', { timeoutMs = 10_000 } = {}) {
      const proc = gw.proc;
      if (!proc || gw.exitInfo) return gw.exitInfo;
      proc.kill(signal);
      const res = await Promise.race([gw.exited, delay(timeoutMs)]);
      if (res) return res;
      proc.kill('SIGKILL');
      return gw.exited;
    },
    /** Sends a signal without waiting. */
    signal(signal) {
      gw.proc?.kill(signal);
    },
    async kill9() {
      return gw.stop('SIGKILL');
    },
    /** Resolves with {code, signal} if the process exits within ms, else null. */
    async waitExit(ms) {
      return Promise.race([gw.exited, delay(ms)]);
    },
    /** Stops (SIGKILL) if still running, then starts again on the same port. */
    async restart() {
      if (gw.proc && !gw.exitInfo) await gw.kill9();
      await launch();
      return gw;
    },
  };

  // One data directory per gateway, kept across restart() (the embedded default's SQLite store).
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cg-conf-'));

  async function launch() {
    const { cmd, args } = baseCommand(opts.command);
    const fullArgs = [...args, '--port', String(port), '--host', '127.0.0.1', ...(opts.args ?? [])];
    gw.log += `\n--- start: ${cmd} ${fullArgs.join(' ')}\n`;
    const proc = spawn(cmd, fullArgs, {
      cwd: REPO,
      env: {
        ...process.env,
        PYTHONUNBUFFERED: '1',
        AUTH_ENABLED: 'false',
        CHAINGRAPH_DATA_DIR: dataDir,
        // The embedded default keeps its own SQLite store unless a test asks for PostgreSQL
        // (make test exports DATABASE_URL for the tests that need it; empty means unset).
        DATABASE_URL: '',
        EXECUTION_MODE: '',
        ...(opts.env ?? {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    gw.proc = proc;
    gw.exitInfo = null;
    live.add(proc);
    const onData = (chunk) => {
      const s = chunk.toString();
      gw.log += s;
      if (gw.log.length > 200_000) gw.log = gw.log.slice(-100_000);
      if (process.env.CONFORMANCE_VERBOSE) process.stderr.write(`[gw:${port}] ${s}`);
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    gw.exited = new Promise((resolve) => {
      proc.on('error', (err) => {
        gw.log += `\n--- spawn error: ${err.message}\n`;
      });
      proc.on('close', (code, signal) => {
        live.delete(proc);
        gw.exitInfo = { code, signal };
        gw.log += `\n--- exited code=${code} signal=${signal}\n`;
        resolve(gw.exitInfo);
      });
    });

    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      if (gw.exitInfo) {
        throw new Error(`gateway exited before becoming healthy (port ${port}):\n${gw.log}`);
      }
      if ((await httpStatus(`${gw.httpUrl}/health`, 500)) === 200) return;
      await sleep(100);
    }
    proc.kill('SIGKILL');
    await gw.exited;
    throw new Error(
      `gateway not healthy within ${startTimeoutMs} ms (GET ${gw.httpUrl}/health):\n${gw.log}`,
    );
  }

  await launch();
  return gw;
}

/**
 * One gateway for the whole test file: started in a root `before`, killed in a root `after`.
 * Node 20 runs several root-level `before` hooks concurrently, so do per-file setup via
 * `setup(gw)` / cleanup via `teardown(gw)` here instead of separate hooks.
 * Returns a holder whose `.gw` is set once started.
 */
export function gatewayFixture({ setup, teardown, ...opts } = {}) {
  const holder = { gw: null };
  before(async () => {
    holder.gw = await startGateway(opts);
    if (setup) await setup(holder.gw);
  });
  after(async () => {
    try {
      if (teardown) await teardown(holder.gw);
    } finally {
      await holder.gw?.kill9();
    }
  });
  return holder;
}

/** A `ws` WebSocket subclass that records every frame sent and received. */
function recordingWebSocket(sent, received, sockets) {
  return class RecordingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
      this.addEventListener('message', (ev) => {
        received.push(typeof ev.data === 'string' ? ev.data : ev.data);
      });
    }
    send(data, ...rest) {
      sent.push(typeof data === 'string' ? data : data);
      return super.send(data, ...rest);
    }
  };
}

/**
 * Official client: createTRPCClient + wsLink + createWSClient({WebSocket: ws}).
 * Extra options are passed to createWSClient (onOpen, onClose, onError, lazy, retryDelayMs…).
 * Returns {client, wsClient, sent, received, sockets, close()}.
 */
export function makeClient({
  url,
  connectionParams,
  keepAlive,
  transformer = superjson,
  ...wsOptions
}) {
  const sent = [];
  const received = [];
  const sockets = [];
  const wsClient = createWSClient({
    url,
    WebSocket: recordingWebSocket(sent, received, sockets),
    ...(connectionParams !== undefined ? { connectionParams } : {}),
    ...(keepAlive !== undefined ? { keepAlive } : {}),
    ...wsOptions,
  });
  const client = createTRPCClient({
    links: [wsLink({ client: wsClient, ...(transformer ? { transformer } : {}) })],
  });
  return {
    client,
    wsClient,
    sent,
    received,
    sockets,
    close: () => closeClient(wsClient, sockets),
  };
}

/**
 * Raw WebSocket for arbitrary frames. Frames are recorded as {text, json, at}.
 * @returns {Promise<RawSocket>}
 */
export async function openRaw(url, { query = '', timeoutMs = 5000 } = {}) {
  const full = query ? `${url}${url.includes('?') ? '&' : '?'}${query.replace(/^\?/, '')}` : url;
  return openRawSocket(new WebSocket(full), `raw ws open timeout ${full}`, timeoutMs);
}

/**
 * Closes an official client's wsClient (at most 1.5 s) and terminates every socket it opened.
 * @returns {Promise<void>}
 */
export async function closeClient(wsClient, sockets) {
  await Promise.race([wsClient.close().catch(() => null), delay(1500)]);
  for (const s of sockets) {
    try {
      s.terminate();
    } catch {
      /* ignore */
    }
  }
}

/**
 * Wraps `ws` in a RawSocket once it is open; rejects with `timeoutMessage` after `timeoutMs`.
 * @returns {Promise<RawSocket>}
 */
export async function openRawSocket(ws, timeoutMessage, timeoutMs = 5000) {
  const raw = new RawSocket(ws);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(timeoutMessage)), timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve();
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  return raw;
}

export class RawSocket {
  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.cursor = 0;
    this.closeInfo = null;
    this.autoPong = false;
    this._waiters = new Set();
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString(), at: Date.now() };
        resolve(this.closeInfo);
        this._wake();
      });
    });
    ws.on('error', () => {
      /* surfaced through close */
    });
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString();
      let json;
      if (text !== null) {
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
      }
      this.frames.push({ text, binary: isBinary ? data : null, json, at: Date.now() });
      if (this.autoPong && text === 'PING') ws.send('PONG');
      this._wake();
    });
  }

  _wake() {
    for (const w of this._waiters) w();
  }

  /** Sends a string as-is, anything else JSON-encoded. */
  send(frame) {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** JSON frames (parsed) received so far, optionally filtered by id. */
  json(id) {
    const all = this.frames.filter((f) => f.json !== undefined).map((f) => f.json);
    return id === undefined ? all : all.filter((m) => m && m.id === id);
  }

  /**
   * Waits for a frame matching pred(frame) with index >= from (default: any frame ever
   * received). Rejects after timeoutMs. Returns the frame {text, json, at}.
   */
  async waitFor(pred, { timeoutMs = 3000, from = 0, what = 'frame' } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.frames.length; i++) {
        if (pred(this.frames[i])) return this.frames[i];
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.closeInfo) {
        // one last look after close: frames may have arrived together with it
        for (let i = from; i < this.frames.length; i++) {
          if (pred(this.frames[i])) return this.frames[i];
        }
        throw new Error(
          `timed out waiting for ${what}${this.closeInfo ? ` (socket closed ${this.closeInfo.code})` : ''}; received:\n` +
            this.frames.map((f) => `  ${f.text}`).join('\n'),
        );
      }
      await new Promise((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this._waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this._waiters.add(wake);
      });
    }
  }

  /** Waits for a JSON message satisfying pred(msg). Returns the parsed message. */
  async waitForJSON(pred, opts = {}) {
    const f = await this.waitFor((fr) => fr.json !== undefined && pred(fr.json), opts);
    return f.json;
  }

  /** Next frame after the internal cursor (sequential consumption). */
  async next({ timeoutMs = 3000 } = {}) {
    const idx = this.cursor;
    const f = await this.waitFor(() => true, { timeoutMs, from: idx, what: `frame #${idx}` });
    this.cursor = this.frames.indexOf(f) + 1;
    return f;
  }

  /** Resolves with the close info, or null if still open after timeoutMs. */
  async waitClose(timeoutMs = 3000) {
    return Promise.race([this.closed, delay(timeoutMs)]);
  }

  close() {
    try {
      this.ws.terminate();
    } catch {
      /* ignore */
    }
  }
}

/** Resolves when pred() is truthy (polled), rejects after timeoutMs. */
export async function until(pred, { timeoutMs = 5000, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** superjson-serialize a value for a raw frame's `params.input`. */
export function sj(value) {
  return superjson.serialize(value);
}

/**
 * Unwraps an error object from a raw frame. The gateway uses superjson, so the whole
 * error shape arrives as {json: {...}}; accept a bare shape too.
 */
export function rawError(msg) {
  const e = msg?.error;
  if (e && typeof e === 'object' && 'json' in e && !('code' in e)) {
    return superjson.deserialize(e);
  }
  return e;
}

/**
 * Subscribes with the official client through `proc.subscribe(input, callbacks)` (e.g.
 * client.system.ticks) and records everything. `sub.done` resolves on complete or error.
 */
export function recordSubscription(proc, input, { onData } = {}) {
  const sub = {
    started: 0,
    data: [],
    error: null,
    stopped: 0,
    completed: 0,
    states: [],
    unsubscribe: null,
  };
  let resolveDone;
  sub.done = new Promise((r) => (resolveDone = r));
  const handle = proc.subscribe(input, {
    onStarted: () => sub.started++,
    onData: (d) => {
      sub.data.push(d);
      onData?.(d, sub);
    },
    onError: (e) => {
      sub.error = e;
      resolveDone('error');
    },
    onStopped: () => sub.stopped++,
    onComplete: () => {
      sub.completed++;
      resolveDone('complete');
    },
    onConnectionStateChange: (s) => sub.states.push(s.state),
  });
  sub.unsubscribe = () => handle.unsubscribe();
  return sub;
}

export function superjsonDeserialize(payload) {
  return superjson.deserialize(payload);
}

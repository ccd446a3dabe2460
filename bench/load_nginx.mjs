#!/usr/bin/env node
// Load run through nginx (see bench/README.md, "Load through nginx"). A benchmark, not a test.
//
//   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/chaingraph KAFKA_BROKERS=127.0.0.1:9092 \
//     node bench/load_nginx.mjs
//
// Starts the deployment stack with docker/entrypoint.sh (temporary PREFIX; nginx + INSTANCES gateways +
// WORKERS workers under supervisord; distributed mode on the given PostgreSQL and Kafka with a unique
// KAFKA_TOPICS_PREFIX; AUTH_ENABLED=false), creates one flow of LOAD_NODES chained SleepNodes, keeps
// LOAD_EXECUTIONS executions of it running (each one is replaced by a new one when it ends), and opens
// LOAD_CLIENTS raw WebSocket clients through nginx from spread loopback source addresses (127.0.X.Y, so
// ip_hash spreads them over the gateways). Each client subscribes to `executionEvents` (tracked, from
// index 0) of its execution and moves on to the replacement when the stream ends. Over a window of
// LOAD_SECONDS it measures connections held, events/s delivered, per-event latency (receive time minus
// event timestamp), RSS per process before/after the clients connect and subscribe, CPU per process.
// Prints a table, writes bench/results/load_nginx.json, stops the stack with SIGTERM, deletes its topics.
//
// Loopback only. Every wait is bounded; a hard stop at LOAD_BUDGET_SECONDS cleans up and exits.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { WebSocket } from '../conformance/lib/deps.mjs';
import { httpGet, makeClientFrom, startStack } from '../conformance/lib/deploy.mjs';
import { delay, REPO, sleep, withTimeout } from '../conformance/lib/gateway.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const num = (name, dflt) => {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got ${v}`);
  return n;
};
const MODE = env.LOAD_MODE ?? 'distributed'; // 'local' = a dry run without PostgreSQL/Kafka (1 process)
const CLIENTS = num('LOAD_CLIENTS', 2000);
const EXECUTIONS = num('LOAD_EXECUTIONS', 50);
const NODES = num('LOAD_NODES', 20);
const SLEEP_MS = num('LOAD_SLEEP_MS', 250);
const WINDOW_SECONDS = num('LOAD_SECONDS', 60);
const INSTANCES = MODE === 'local' ? 1 : num('LOAD_INSTANCES', 4);
const WORKERS = MODE === 'local' ? 0 : num('LOAD_WORKERS', 2);
const LB_METHOD = env.LOAD_LB_METHOD ?? 'ip_hash';
const CONNECT_BATCH = num('LOAD_CONNECT_BATCH', 100);
const BUDGET_SECONDS = num('LOAD_BUDGET_SECONDS', 210);
const DRAIN_SECONDS = num('LOAD_DRAIN_SECONDS', 2);
const LOG_LEVEL = env.LOAD_LOG_LEVEL ?? 'warn';
const WORKER_CONCURRENCY = num('LOAD_WORKER_CONCURRENCY', Math.ceil(EXECUTIONS / Math.max(WORKERS, 1)) + 8);
const DATABASE_URL = env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/chaingraph';
const KAFKA_BROKERS = env.KAFKA_BROKERS || '127.0.0.1:9092';
const TOPICS_PREFIX = `bench-load-${crypto.randomBytes(4).toString('hex')}.`;
// An execution that has not ended this long after it was started is reported and replaced.
const EXEC_WATCHDOG_MS = NODES * SLEEP_MS * 3 + 20_000;
const TERMINAL = new Set(['flow:completed', 'flow:failed', 'flow:cancelled']);
const OUT = env.LOAD_OUT ? path.resolve(env.LOAD_OUT) : path.join(HERE, 'results', 'load_nginx.json');

const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
/** Sub-millisecond wall-clock time (ms since the epoch). */
const nowMs = () => performance.timeOrigin + performance.now();
const log = (...a) => console.error(`[load ${elapsed().toFixed(1).padStart(5)}s]`, ...a);
const errMsg = (e) => String(e?.message ?? e).split('\n')[0].slice(0, 300);

// ---------------------------------------------------------------------------------------------- /proc

function procStatus(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => {
      const m = new RegExp(`${k}:\\s+(\\d+) kB`).exec(s);
      return m ? Number(m[1]) : null;
    };
    return { rssKiB: kb('VmRSS'), hwmKiB: kb('VmHWM') };
  } catch {
    return { rssKiB: null, hwmKiB: null };
  }
}

/** utime+stime of a process in seconds, or null. */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

function childrenOf(ppid) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === ppid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Busy CPU seconds of the whole machine (all cores) from /proc/stat. */
function machineBusySeconds() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0);
  return (f.reduce((a, b) => a + b, 0) - idle) / 100;
}

function cmdline(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

function commOf(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
  } catch {
    return '';
  }
}

/** CPU seconds of PostgreSQL (live processes + the postmaster's reaped children) and of Kafka. */
function serviceCpu() {
  let pg = 0;
  let kafka = 0;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const own = (Number(f[11]) + Number(f[12])) / 100;
    if (comm === 'postgres') {
      pg += own;
      if (commOf(Number(f[1])) !== 'postgres') {
        pg += (Number(f[13]) + Number(f[14])) / 100; // the postmaster: children it reaped
      }
    } else if (comm === 'java' && /kafka/i.test(cmdline(Number(d)))) kafka += own;
  }
  return { postgresCpuS: +pg.toFixed(2), kafkaCpuS: +kafka.toFixed(2) };
}

function openFds(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

// --------------------------------------------------------------------------------------------- stats

/** Latency histogram: 0.1 ms buckets up to 60 s, exact max. */
class Hist {
  constructor() {
    this.b = new Uint32Array(600_000);
    this.n = 0;
    this.over = 0;
    this.max = -Infinity;
    this.min = Infinity;
    this.sum = 0;
  }
  add(ms) {
    this.n++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (ms < this.min) this.min = ms;
    const i = Math.floor(Math.max(0, ms) * 10);
    if (i >= this.b.length) this.over++;
    else this.b[i]++;
  }
  pct(p) {
    if (!this.n) return null;
    const want = Math.max(1, Math.ceil((p / 100) * this.n));
    let c = 0;
    for (let i = 0; i < this.b.length; i++) {
      c += this.b[i];
      if (c >= want) return +((i + 1) / 10).toFixed(1);
    }
    return +this.max.toFixed(1);
  }
  summary() {
    if (!this.n) return { n: 0 };
    return {
      n: this.n,
      min: +this.min.toFixed(1),
      p50: this.pct(50),
      p90: this.pct(90),
      p99: this.pct(99),
      p999: this.pct(99.9),
      max: +this.max.toFixed(1),
      mean: +(this.sum / this.n).toFixed(1),
      over1s: this.countAbove(1000),
    };
  }
  countAbove(ms) {
    let c = this.over;
    for (let i = Math.floor(ms * 10); i < this.b.length; i++) c += this.b[i];
    return c;
  }
}

function quantiles(xs) {
  if (!xs.length) return { n: 0 };
  const s = Float64Array.from(xs).sort();
  const q = (p) => +s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))].toFixed(1);
  return { n: s.length, p50: q(50), p99: q(99), max: +s[s.length - 1].toFixed(1) };
}

class Symptoms {
  constructor() {
    this.counts = {};
    this.examples = [];
  }
  add(kind, detail = {}) {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    const same = this.examples.filter((e) => e.kind === kind).length;
    if (same < 5 && this.examples.length < 60) this.examples.push({ kind, at: +elapsed().toFixed(2), ...detail });
  }
  get total() {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }
}

// ---------------------------------------------------------------------------------------------- state

const symptoms = new Symptoms();
const result = {
  benchmark: 'load_nginx',
  startedAt: new Date().toISOString(),
  complete: false,
  host: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memMiB: Math.round(os.totalmem() / 2 ** 20),
    loadavgAtStart: os.loadavg(), node: process.version, nofile: null },
  config: { MODE, CLIENTS, EXECUTIONS, NODES, SLEEP_MS, WINDOW_SECONDS, INSTANCES, WORKERS, LB_METHOD,
    CONNECT_BATCH, DRAIN_SECONDS, LOG_LEVEL, WORKER_CONCURRENCY, TOPICS_PREFIX, BUDGET_SECONDS },
};
try {
  result.host.nofile = execFileSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  result.git = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim();
} catch {
  /* informational only */
}

let stack = null;
let control = null;
let flowId = null;
let stopping = false; // no more execution replacements
let measuring = false;
let windowStart = 0; // nowMs()
let windowEnd = Infinity;
const clients = [];
const slots = [];

const hist = new Hist(); // events stamped after their subscription was sent, received in the window
const histTail = new Hist(); // the live tail only: stamped after the subscription's first event arrived
const histByGateway = new Map();
const histTailByGateway = new Map();
const setupStarted = []; // subscription sent → 'started', ms (window)
const setupFirst = []; // subscription sent → first event, ms (window)
const histByType = new Map();
const topLatency = []; // the 20 slowest live events in the window
const perSecond = []; // {events, live, maxLatency}
let windowEvents = 0;
let windowLive = 0;
let windowBytes = 0;
let totalEvents = 0;
let reconnectNotices = 0;
const stopErrors = {}; // subscription errors after the window (cancel + SIGTERM), by message

function gwHist(map, key) {
  let h = map.get(key);
  if (!h) map.set(key, (h = new Hist()));
  return h;
}

function noteTop(entry) {
  if (topLatency.length < 20) topLatency.push(entry);
  else if (entry.latencyMs > topLatency[topLatency.length - 1].latencyMs) topLatency[topLatency.length - 1] = entry;
  else return;
  topLatency.sort((a, b) => b.latencyMs - a.latencyMs);
}

// ---------------------------------------------------------------------------------------- executions

function sleepChain() {
  const nodes = [];
  const edges = [];
  for (let i = 0; i < NODES; i++) {
    nodes.push({ id: `s${i}`, type: 'SleepNode', values: { duration: SLEEP_MS } });
    if (i > 0) edges.push({ from: `s${i - 1}.actualDuration`, to: `s${i}.duration` });
  }
  return { name: `bench load: ${NODES} x SleepNode ${SLEEP_MS} ms`, description: 'bench/load_nginx.mjs', nodes, edges };
}

const execStats = { started: 0, ended: 0, byTerminal: {}, durationsMs: [], eventsPerExecution: [], startFailures: 0 };

/** Creates and starts a new execution for the slot, then points the slot's clients at it. */
async function launch(slot) {
  if (stopping) return;
  slot.launching = true;
  for (let attempt = 1; attempt <= 3 && !stopping; attempt++) {
    try {
      const { executionId } = await withTimeout(control.client.create.mutate({ flowId }), 15_000, 'create');
      await withTimeout(control.client.start.mutate({ executionId }), 15_000, 'start');
      execStats.started++;
      slot.execId = executionId;
      slot.gen++;
      slot.startedAt = nowMs();
      slot.ended = false;
      slot.launching = false;
      clearTimeout(slot.watchdog);
      slot.watchdog = setTimeout(() => {
        if (slot.execId !== executionId || slot.ended || stopping) return;
        symptoms.add('execution did not end in time', { executionId, afterMs: EXEC_WATCHDOG_MS });
        slot.ended = true;
        launch(slot);
      }, EXEC_WATCHDOG_MS);
      slot.watchdog.unref();
      const waiting = slot.waiters.splice(0);
      for (const c of waiting) subscribe(c);
      return;
    } catch (e) {
      execStats.startFailures++;
      symptoms.add('create/start failed', { attempt, error: errMsg(e) });
      await sleep(500 * attempt);
    }
  }
  slot.launching = false;
}

/** Called by the first client that sees the slot's execution end. */
function executionEnded(slot, execId, type, lastIndex) {
  if (slot.execId !== execId || slot.ended) return;
  slot.ended = true;
  clearTimeout(slot.watchdog);
  execStats.ended++;
  execStats.byTerminal[type] = (execStats.byTerminal[type] ?? 0) + 1;
  execStats.durationsMs.push(nowMs() - slot.startedAt);
  execStats.eventsPerExecution.push(lastIndex + 1);
  if (type !== 'flow:completed' && !stopping) symptoms.add(`execution ended ${type}`, { executionId: execId });
  if (!stopping) launch(slot);
}

// ------------------------------------------------------------------------------------------- clients

function sourceAddress(k) {
  // ip_hash keys IPv4 clients by their /24: vary the third octet.
  return `127.0.${1 + (k % 200)}.${1 + Math.floor(k / 200)}`;
}

function send(c, obj) {
  if (c.ws.readyState !== WebSocket.OPEN) return;
  c.ws.send(JSON.stringify(obj));
}

function subscribe(c, { resume = false } = {}) {
  if (c.closed) return;
  const input = { executionId: null, fromIndex: 0 };
  if (resume && c.execId && !c.sawTerminal) {
    // after a subscription error: the same execution again, from the next index (lastEventId)
    input.executionId = c.execId;
    if (c.nextIndex > 0) input.lastEventId = String(c.nextIndex - 1);
    c.resumes++;
  } else {
    const slot = slots[c.slot];
    if (!slot.execId || slot.execId === c.lastExecId) {
      if (!slot.waiters.includes(c)) slot.waiters.push(c);
      return;
    }
    input.executionId = slot.execId;
    c.execId = slot.execId;
    c.lastExecId = slot.execId;
    c.nextIndex = 0;
    c.sawTerminal = false;
  }
  c.subId = ++c.nextId;
  c.subSentAt = nowMs();
  c.firstDataAt = 0;
  c.subscriptions++;
  send(c, { id: c.subId, method: 'subscription', params: { path: 'executionEvents', input: { json: input } } });
}

function onMessage(c, data) {
  const recv = nowMs();
  const text = data.toString();
  if (text === 'PING') {
    c.ws.send('PONG');
    c.pings++;
    return;
  }
  if (text === 'PONG') return;
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    symptoms.add('unparseable frame', { client: c.k, text: text.slice(0, 200) });
    return;
  }
  if (msg.method === 'reconnect') {
    c.reconnects++;
    reconnectNotices++;
    if (!stopping) symptoms.add('reconnect notice during the run', { client: c.k, gateway: c.gateway });
    return;
  }
  if (msg.id === 1) {
    c.gateway = msg.result?.data?.json?.instanceId?.match(/(gateway-\d+|all-\d+|[^-]+)$/)?.[0] ?? 'unknown';
    if (msg.error) symptoms.add('system.info error', { client: c.k, error: JSON.stringify(msg.error).slice(0, 300) });
    c.infoResolve?.();
    return;
  }
  if (msg.id !== c.subId) return; // a late frame of a finished subscription
  if (msg.error) {
    const m = msg.error?.json?.message ?? JSON.stringify(msg.error);
    if (stopping) {
      // SIGTERM / cancel phase: noted, not retried
      stopErrors[m] = (stopErrors[m] ?? 0) + 1;
      c.subId = -1;
      return;
    }
    symptoms.add(`subscription error (retried): ${String(m).slice(0, 120)}`, { client: c.k, gateway: c.gateway, executionId: c.execId,
      code: msg.error?.json?.data?.code, nextIndex: c.nextIndex });
    c.subId = -1;
    setTimeout(() => subscribe(c, { resume: true }), 500).unref();
    return;
  }
  const r = msg.result;
  if (!r) return;
  if (r.type === 'started') {
    c.startedSubs++;
    if (measuring && recv >= windowStart && recv < windowEnd) setupStarted.push(recv - c.subSentAt);
    return;
  }
  if (r.type === 'stopped') {
    if (!c.sawTerminal && !stopping) {
      symptoms.add('subscription stopped before the terminal event', { client: c.k, gateway: c.gateway, executionId: c.execId, nextIndex: c.nextIndex });
    }
    c.subId = -1;
    subscribe(c);
    return;
  }
  if (r.type !== 'data') return;
  // tracked(id, event) on the wire: result {type: 'data', id, data: superjson({id, data: event})}
  const ev = r.data?.json?.data;
  totalEvents++;
  c.events++;
  const index = ev?.index;
  if (index !== c.nextIndex) {
    symptoms.add(index < c.nextIndex ? 'duplicate/out-of-order event' : 'gap in event indexes', {
      client: c.k, gateway: c.gateway, executionId: c.execId, expected: c.nextIndex, got: index });
  }
  if (String(index) !== r.id) symptoms.add('tracked id != event index', { client: c.k, id: r.id, index });
  c.nextIndex = Math.max(c.nextIndex, index + 1);
  const ts = Date.parse(ev.timestamp);
  const inWindow = measuring && recv >= windowStart && recv < windowEnd;
  const first = !c.firstDataAt;
  if (first) {
    c.firstDataAt = recv;
    if (inWindow) setupFirst.push(recv - c.subSentAt);
  }
  // Events stamped before the subscription was sent come from the stored log (replay): they count as
  // delivered, not in the latency. The stamp has whole milliseconds, truncated.
  const live = ts >= Math.floor(c.subSentAt);
  if (inWindow) {
    windowEvents++;
    windowBytes += data.length;
    const sec = Math.floor((recv - windowStart) / 1000);
    const ps = (perSecond[sec] ??= { events: 0, live: 0, maxLatencyMs: 0 });
    ps.events++;
    if (live) {
      const lat = recv - ts;
      windowLive++;
      ps.live++;
      if (lat > ps.maxLatencyMs) ps.maxLatencyMs = +lat.toFixed(1);
      hist.add(lat);
      gwHist(histByGateway, c.gateway).add(lat);
      // produced after this subscription had delivered its first event: came through the live tail
      if (!first && ts >= Math.floor(c.firstDataAt)) {
        histTail.add(lat);
        gwHist(histTailByGateway, c.gateway).add(lat);
      }
      gwHist(histByType, ev.type).add(lat);
      if (topLatency.length < 20 || lat > topLatency[topLatency.length - 1].latencyMs) {
        noteTop({ latencyMs: +lat.toFixed(1), atWindowS: +((recv - windowStart) / 1000).toFixed(2), client: c.k,
          gateway: c.gateway, executionId: c.execId, index, type: ev.type });
      }
    }
  }
  if (TERMINAL.has(ev.type)) {
    c.sawTerminal = true;
    executionEnded(slots[c.slot], c.execId, ev.type, index);
  }
}

function openClient(k, url) {
  const c = {
    k, slot: Math.floor((k * EXECUTIONS) / CLIENTS), addr: sourceAddress(k), ws: null, gateway: null,
    opened: false, openMs: null, closed: false, closeInfo: null, nextId: 1, subId: -1, execId: null,
    lastExecId: null, nextIndex: 0, sawTerminal: false, subSentAt: 0, subscriptions: 0, startedSubs: 0,
    events: 0, pings: 0, reconnects: 0, infoResolve: null, firstDataAt: 0, resumes: 0,
  };
  clients.push(c);
  const tOpen = performance.now();
  return new Promise((resolve) => {
    const ws = new WebSocket(url, [], { localAddress: c.addr, perMessageDeflate: false, handshakeTimeout: 15_000 });
    c.ws = ws;
    const done = (ok) => {
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => {
      symptoms.add('connect timeout', { client: c.k, addr: c.addr });
      ws.terminate();
      done(false);
    }, 20_000);
    ws.on('open', () => {
      c.opened = true;
      c.openMs = performance.now() - tOpen;
      const info = new Promise((r) => (c.infoResolve = r));
      send(c, { id: 1, method: 'query', params: { path: 'system.info', input: { json: null } } });
      withTimeout(info, 15_000, 'system.info').then(() => done(true), () => {
        symptoms.add('system.info timeout', { client: c.k, addr: c.addr });
        done(true);
      });
    });
    ws.on('message', (data) => onMessage(c, data));
    ws.on('error', (e) => {
      if (!c.opened) {
        symptoms.add('connect error', { client: c.k, addr: c.addr, error: errMsg(e) });
        done(false);
      } else if (!stopping) symptoms.add('socket error', { client: c.k, gateway: c.gateway, error: errMsg(e) });
    });
    ws.on('close', (code, reason) => {
      c.closed = true;
      c.closeInfo = { code, reason: reason.toString(), atS: +elapsed().toFixed(2) };
      if (c.opened && !stopping) {
        symptoms.add('connection dropped', { client: c.k, gateway: c.gateway, addr: c.addr, code, reason: reason.toString() });
      }
      done(false);
    });
  });
}

// ------------------------------------------------------------------------------------------ snapshots

/** {gateway-0: pid, …, worker-0: pid, …, nginx: pid} from `supervisorctl pid`. */
function processes() {
  const out = {};
  for (const name of Object.keys(stack.status())) {
    if (name === 'memmon' || name === 'fatal') continue;
    const pid = stack.pid(name);
    if (pid > 0) out[name.replace(/^(gateways|workers):/, '')] = pid;
    else symptoms.add('no pid from supervisorctl', { name });
  }
  return out;
}

function snapshot(procs) {
  const s = {};
  for (const [name, pid] of Object.entries(procs)) {
    const pids = name === 'nginx' ? [pid, ...childrenOf(pid)] : [pid];
    let rss = 0;
    let hwm = 0;
    let cpu = 0;
    for (const p of pids) {
      const st = procStatus(p);
      rss += st.rssKiB ?? 0;
      hwm += st.hwmKiB ?? 0;
      cpu += cpuSeconds(p) ?? 0;
    }
    s[name] = { pids, rssKiB: rss, hwmKiB: hwm, cpuS: +cpu.toFixed(2), fds: openFds(pid) };
  }
  const u = process.cpuUsage();
  return { atS: +elapsed().toFixed(2), wall: nowMs(), procs: s, benchCpuS: (u.user + u.system) / 1e6,
    machineBusyS: machineBusySeconds(), ...serviceCpu() };
}

/** Established TCP sockets: client→nginx, and nginx→gateway ports. */
function socketCounts() {
  const r = spawnSync('ss', ['-Htn', 'state', 'established'], { encoding: 'utf8', timeout: 10_000, maxBuffer: 64 << 20 });
  const counts = { clientToNginx: 0, nginxToGateways: 0 };
  for (const line of (r.stdout ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const local = Number(f[2].split(':').pop());
    const peer = Number(f[3].split(':').pop());
    if (local === stack.nginxPort) counts.clientToNginx++;
    if (peer >= stack.port && peer < stack.port + INSTANCES && f[2].startsWith('127.0.0.1:')) counts.nginxToGateways++;
  }
  return counts;
}

async function gatewayMetric(name) {
  const out = {};
  for (let i = 0; i < INSTANCES; i++) {
    const r = await httpGet(`${stack.base}/metrics/gateway-${i}`, { timeoutMs: 5000 });
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([0-9.e+-]+)`, 'm').exec(r.body ?? '');
    out[`gateway-${i}`] = m ? Number(m[1]) : null;
  }
  return out;
}

// -------------------------------------------------------------------------------------------- cleanup

let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  stopping = true;
  for (const s of slots) clearTimeout(s.watchdog);
  for (const c of clients) {
    try {
      c.ws?.terminate();
    } catch {
      /* ignore */
    }
  }
  if (control) await control.close().catch(() => null);
  if (stack) {
    await stack.stop(40_000).catch((e) => log('stack.stop failed:', errMsg(e)));
    stack.removePrefix();
  }
  if (MODE !== 'local') result.topicsDeleted = deleteTopics();
}

function deleteTopics() {
  const py = `
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": sys.argv[1]})
names = [t for t in a.list_topics(timeout=10).topics if t.startswith(sys.argv[2])]
out = {}
if names:
    for n, f in a.delete_topics(names, operation_timeout=15, request_timeout=20).items():
        try:
            f.result(timeout=25); out[n] = "deleted"
        except Exception as e:
            out[n] = "failed: %s" % e
print(repr(out))
`;
  const r = spawnSync(path.join(REPO, '.venv', 'bin', 'python'), ['-c', py, KAFKA_BROKERS, TOPICS_PREFIX], {
    encoding: 'utf8', timeout: 45_000,
  });
  const out = (r.stdout || r.stderr || String(r.error ?? '')).trim().split('\n').pop();
  log('topics:', out);
  return out;
}

function writeResult() {
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  result.finishedAt = new Date().toISOString();
  result.totalSeconds = +elapsed().toFixed(1);
  result.problems = { total: symptoms.total, counts: symptoms.counts, examples: symptoms.examples };
  fs.writeFileSync(OUT, `${JSON.stringify(result, null, 1)}\n`);
  log(`wrote ${path.relative(REPO, OUT)}`);
}

const hardStop = setTimeout(async () => {
  log(`hard stop at ${BUDGET_SECONDS} s: cleaning up`);
  symptoms.add('hard stop (budget exceeded)');
  try {
    await Promise.race([cleanup(), delay(45_000)]);
  } finally {
    writeResult();
    process.exit(2);
  }
}, BUDGET_SECONDS * 1000);
hardStop.unref();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    log(`${sig}: cleaning up`);
    symptoms.add(`interrupted (${sig})`);
    await Promise.race([cleanup(), delay(45_000)]);
    writeResult();
    process.exit(130);
  });
}

// ----------------------------------------------------------------------------------------------- main

const kib2mib = (k) => +(k / 1024).toFixed(1);

async function main() {
  // 1. the stack
  log(`starting the stack: ${MODE}, INSTANCES=${INSTANCES} WORKERS=${WORKERS} LB_METHOD=${LB_METHOD}`);
  const stackEnv = {
    EXECUTION_MODE: MODE,
    AUTH_ENABLED: 'false',
    LB_METHOD,
    LOG_LEVEL,
    CHAINGRAPH_DRAIN_SECONDS: String(DRAIN_SECONDS),
    CHAINGRAPH_WORKER_CONCURRENCY: String(WORKER_CONCURRENCY),
  };
  if (MODE === 'local') Object.assign(stackEnv, { DATABASE_URL: '', KAFKA_BROKERS: '' });
  else Object.assign(stackEnv, { DATABASE_URL, KAFKA_BROKERS, KAFKA_TOPICS_PREFIX: TOPICS_PREFIX });
  const tStack = performance.now();
  stack = await startStack({ instances: INSTANCES, workers: WORKERS, env: stackEnv, startTimeoutMs: 60_000 });
  result.stackStartSeconds = +((performance.now() - tStack) / 1000).toFixed(1);
  const url = stack.url('/');
  log(`stack up in ${result.stackStartSeconds} s; nginx on ${stack.nginxPort}, gateways ${stack.port}..${stack.port + INSTANCES - 1}`);
  const procs = processes();
  result.processes = procs;
  result.nginxConf = (() => {
    try {
      const conf = fs.readFileSync(path.join(stack.prefix, 'etc', 'chaingraph', 'nginx.conf'), 'utf8');
      const pick = (re) => re.exec(conf)?.[1];
      return { worker_connections: pick(/worker_connections\s+(\d+)/), worker_rlimit_nofile: pick(/worker_rlimit_nofile\s+(\d+)/),
        nginxWorkers: childrenOf(procs.nginx).length };
    } catch {
      return null;
    }
  })();

  // 2. the flow and the running executions
  control = makeClientFrom({ url, localAddress: '127.0.0.1' });
  const flow = await withTimeout(control.client.flows.create.mutate({ flow: sleepChain() }), 15_000, 'flows.create');
  flowId = flow.id;
  for (let i = 0; i < EXECUTIONS; i++) slots.push({ i, execId: null, gen: 0, ended: false, launching: false, startedAt: 0, waiters: [], watchdog: null });
  // Staggered over one execution's length so that the executions do not all end together.
  const spreadMs = Math.min(NODES * SLEEP_MS, 5000);
  await Promise.all(slots.map(async (s) => {
    await sleep((s.i * spreadMs) / EXECUTIONS);
    await launch(s);
  }));
  log(`${EXECUTIONS} executions of a ${NODES} x ${SLEEP_MS} ms SleepNode chain running (flow ${flowId})`);
  await sleep(1000);
  const before = snapshot(procs);
  result.socketsBefore = socketCounts();

  // 3. the clients: connect (system.info tells which gateway each one is on)
  const tConnect = performance.now();
  for (let k = 0; k < CLIENTS; k += CONNECT_BATCH) {
    const batch = [];
    for (let j = k; j < Math.min(CLIENTS, k + CONNECT_BATCH); j++) batch.push(openClient(j, url));
    await Promise.all(batch);
    if (elapsed() > BUDGET_SECONDS - WINDOW_SECONDS - 60) {
      symptoms.add('connect phase too slow: stopped opening clients', { opened: clients.length });
      break;
    }
  }
  const connected = clients.filter((c) => c.opened && !c.closed);
  result.connect = {
    seconds: +((performance.now() - tConnect) / 1000).toFixed(1),
    attempted: clients.length,
    established: clients.filter((c) => c.opened).length,
    openNow: connected.length,
    handshakeMs: quantiles(clients.filter((c) => c.opened).map((c) => c.openMs)),
    perGateway: {},
    distinctSourceAddresses: new Set(clients.map((c) => c.addr)).size,
    distinctSlash24: new Set(clients.map((c) => c.addr.split('.').slice(0, 3).join('.'))).size,
  };
  for (const c of connected) result.connect.perGateway[c.gateway] = (result.connect.perGateway[c.gateway] ?? 0) + 1;
  log(`${connected.length}/${CLIENTS} connected in ${result.connect.seconds} s: ${JSON.stringify(result.connect.perGateway)}`);
  await sleep(2000);
  const afterConnect = snapshot(procs);

  // 4. subscribe every client to its slot's execution
  const tSub = performance.now();
  for (const c of connected) subscribe(c);
  const subDeadline = performance.now() + 20_000;
  while (performance.now() < subDeadline && connected.some((c) => !c.closed && c.startedSubs === 0)) await sleep(100);
  result.subscribe = {
    seconds: +((performance.now() - tSub) / 1000).toFixed(1),
    started: connected.filter((c) => c.startedSubs > 0).length,
  };
  log(`${result.subscribe.started} subscriptions started in ${result.subscribe.seconds} s`);
  await sleep(3000);
  const afterSubscribe = snapshot(procs);
  result.socketsAfterSubscribe = socketCounts();

  // 5. the measuring window
  windowStart = nowMs();
  windowEnd = windowStart + WINDOW_SECONDS * 1000;
  measuring = true;
  const startExecEnded = execStats.ended;
  const winStartSnap = snapshot(procs);
  const held = [];
  log(`measuring for ${WINDOW_SECONDS} s`);
  while (nowMs() < windowEnd) {
    await sleep(Math.min(5000, Math.max(1, windowEnd - nowMs())));
    const open = clients.filter((c) => c.opened && !c.closed).length;
    held.push({ atWindowS: +((nowMs() - windowStart) / 1000).toFixed(1), open });
    const sec = Math.floor((nowMs() - windowStart) / 1000);
    log(`  t=${sec}s open=${open} events=${windowEvents} (${(windowEvents / Math.max(1, sec)).toFixed(0)}/s) live p99 so far=${hist.pct(99)} ms problems=${symptoms.total}`);
  }
  measuring = false;
  const winEndSnap = snapshot(procs);
  const windowS = (winEndSnap.wall - winStartSnap.wall) / 1000;
  result.socketsAtEnd = socketCounts();
  result.gatewayConnectionsMetric = await gatewayMetric('chaingraph_ws_connections');
  const openAtEnd = clients.filter((c) => c.opened && !c.closed).length;

  // 6. stop: cancel the running executions (so that no lease is left for another worker to adopt)
  stopping = true;
  const running = slots.filter((s) => s.execId && !s.ended);
  const stops = await Promise.all(running.map((s) => withTimeout(control.client.stop.mutate({ executionId: s.execId, reason: 'bench done' }), 10_000, 'stop')
    .then(() => 'ok', (e) => errMsg(e))));
  const stopDeadline = performance.now() + 15_000;
  while (performance.now() < stopDeadline && running.some((s) => !s.ended)) await sleep(200);
  const already = (x) => /Cannot stop execution in status (completed|failed|cancelled)/.test(x);
  result.cancelAtEnd = { running: running.length, stopCalls: stops.filter((x) => x === 'ok').length,
    alreadyEnded: stops.filter(already).length, stopErrors: stops.filter((x) => x !== 'ok' && !already(x)).slice(0, 5), notEndedAfter15s: running.filter((s) => !s.ended).map((s) => s.execId) };

  // ---------------------------------------------------------------- figures
  const perProcess = {};
  for (const name of Object.keys(procs)) {
    const b = before.procs[name];
    const ac = afterConnect.procs[name];
    const as = afterSubscribe.procs[name];
    const e = winEndSnap.procs[name];
    const conns = name === 'nginx' ? result.connect.openNow : (result.connect.perGateway[name] ?? 0);
    const perConn = (kib) => (conns > 0 && /gateway|nginx|all/.test(name) ? +(kib / conns).toFixed(1) : null);
    perProcess[name] = {
      connections: /gateway|nginx|all/.test(name) ? conns : null,
      rssMiB: { beforeClients: kib2mib(b.rssKiB), afterConnect: kib2mib(ac.rssKiB), afterSubscribe: kib2mib(as.rssKiB),
        windowEnd: kib2mib(e.rssKiB), peak: kib2mib(e.hwmKiB) },
      // KiB per connection: idle (connected, system.info answered) and with one live subscription
      kibPerConnection: { connected: perConn(ac.rssKiB - b.rssKiB), subscribed: perConn(as.rssKiB - b.rssKiB),
        windowEnd: perConn(e.rssKiB - b.rssKiB) },
      cpuCores: +((e.cpuS - winStartSnap.procs[name].cpuS) / windowS).toFixed(2),
      fds: e.fds,
      latency: histByGateway.get(name)?.summary() ?? null,
      latencyLiveTail: histTailByGateway.get(name)?.summary() ?? null,
    };
  }
  const delivered = windowEvents / windowS;
  result.window = {
    seconds: +windowS.toFixed(1),
    eventsDelivered: windowEvents,
    eventsPerSecond: +delivered.toFixed(0),
    liveEvents: windowLive,
    eventsWholeRun: totalEvents,
    mbPerSecond: +(windowBytes / windowS / 1e6).toFixed(2),
    latencyMs: hist.summary(),
    latencyLiveTailMs: histTail.summary(),
    subscriptionSetupMs: { toStarted: quantiles(setupStarted), toFirstEvent: quantiles(setupFirst) },
    latencyByType: Object.fromEntries([...histByType].map(([k, h]) => [k, h.summary()])),
    slowest: topLatency,
    perSecond,
    executionsEnded: execStats.ended - startExecEnded,
    executionsPerSecond: +((execStats.ended - startExecEnded) / windowS).toFixed(2),
    // what the executions that ended in the window produced, times their subscribers
    expectedDeliveriesPerSecond: +(((execStats.ended - startExecEnded) * (quantiles(execStats.eventsPerExecution).p50 ?? 0) * (CLIENTS / EXECUTIONS)) / windowS).toFixed(0),
    benchCpuCores: +((winEndSnap.benchCpuS - winStartSnap.benchCpuS) / windowS).toFixed(2),
    machineBusyCores: +((winEndSnap.machineBusyS - winStartSnap.machineBusyS) / windowS).toFixed(2),
    postgresCpuCores: +((winEndSnap.postgresCpuS - winStartSnap.postgresCpuS) / windowS).toFixed(2),
    kafkaCpuCores: +((winEndSnap.kafkaCpuS - winStartSnap.kafkaCpuS) / windowS).toFixed(2),
    loadavg: os.loadavg(),
  };
  result.connections = {
    established: result.connect.established,
    openAtWindowStart: result.subscribe.started,
    openAtWindowEnd: openAtEnd,
    held,
    droppedDuringRun: clients.filter((c) => c.opened && c.closed && c.closeInfo && c.closeInfo.atS <= (winEndSnap.atS)).length,
    reconnectNoticesDuringRun: reconnectNotices,
    pingsAnswered: clients.reduce((a, c) => a + c.pings, 0),
    subscriptionsPerClient: quantiles(clients.map((c) => c.subscriptions)),
    resumesAfterError: clients.reduce((a, c) => a + c.resumes, 0),
  };
  result.executions = {
    started: execStats.started,
    ended: execStats.ended,
    byTerminal: execStats.byTerminal,
    durationMs: quantiles(execStats.durationsMs),
    eventsPerExecution: quantiles(execStats.eventsPerExecution),
    startFailures: execStats.startFailures,
  };
  result.perProcess = perProcess;
  result.snapshots = { before, afterConnect, afterSubscribe, windowStart: winStartSnap, windowEnd: winEndSnap };

  // 7. SIGTERM with the clients still attached
  const noticesBefore = reconnectNotices;
  const tStop = performance.now();
  const sentAtS = +elapsed().toFixed(2);
  const logMark = stack.log.length;
  await stack.stop(60_000);
  result.stop = {
    sentAtS,
    seconds: +((performance.now() - tStop) / 1000).toFixed(1),
    subscriptionErrorsAfterWindow: stopErrors,
    exit: stack.exitInfo,
    reconnectNotices: reconnectNotices - noticesBefore,
    clientsClosedByStop: clients.filter((c) => c.closed).length - (CLIENTS - openAtEnd),
  };
  const tail = stack.log.slice(logMark);
  result.stop.logTail = tail.split('\n').filter((l) => /error|fatal|traceback|exit/i.test(l)).slice(-20);
  result.logProblems = stack.log.split('\n').filter((l) => /\b(error|critical|traceback|exception|warn)/i.test(l) && !/librdkafka|rdkafka/.test(l)).slice(-40);
  result.complete = true;
}

function printTable() {
  const w = result.window;
  if (!w) return;
  const rows = [];
  const line = (k, v) => rows.push(`  ${k.padEnd(44)} ${v}`);
  console.log(`\nLoad through nginx: ${CLIENTS} clients, ${EXECUTIONS} executions (${NODES} x SleepNode ${SLEEP_MS} ms), ` +
    `${INSTANCES} gateways + ${WORKERS} workers, ${LB_METHOD}, ${result.host.cpus} CPUs`);
  line('connections established / open at end', `${result.connections.established} / ${result.connections.openAtWindowEnd}`);
  line('dropped during the run', `${result.connections.droppedDuringRun}`);
  line('clients per gateway', JSON.stringify(result.connect.perGateway));
  line('handshake ms p50/p99/max', `${result.connect.handshakeMs.p50} / ${result.connect.handshakeMs.p99} / ${result.connect.handshakeMs.max}`);
  line('window', `${w.seconds} s`);
  line('events delivered / s', `${w.eventsPerSecond} (${w.mbPerSecond} MB/s; ${w.eventsDelivered} in the window)`);
  line('executions ended in the window (/s)', `${w.executionsEnded} (${w.executionsPerSecond}/s; x events x subscribers = ${w.expectedDeliveriesPerSecond} deliveries/s)`);
  const l = w.latencyMs;
  line('latency ms p50/p90/p99/p99.9/max', `${l.p50} / ${l.p90} / ${l.p99} / ${l.p999} / ${l.max} (n=${l.n}, >1 s: ${l.over1s})`);
  const lt = w.latencyLiveTailMs;
  line('  live tail only p50/p90/p99/p99.9/max', `${lt.p50} / ${lt.p90} / ${lt.p99} / ${lt.p999} / ${lt.max} (n=${lt.n}, >1 s: ${lt.over1s})`);
  const su = w.subscriptionSetupMs;
  line('subscribe → started / first event p50/p99/max', `${su.toStarted.p50}/${su.toStarted.p99}/${su.toStarted.max} ; ${su.toFirstEvent.p50}/${su.toFirstEvent.p99}/${su.toFirstEvent.max} (n=${su.toFirstEvent.n})`);
  line('CPU cores: machine / bench / PostgreSQL / Kafka', `${w.machineBusyCores} / ${w.benchCpuCores} / ${w.postgresCpuCores} / ${w.kafkaCpuCores}`);
  console.log(rows.join('\n'));
  console.log(`\n  ${'process'.padEnd(11)} ${'conns'.padStart(6)} ${'RSS before'.padStart(10)} ${'connected'.padStart(10)} ${'subscribed'.padStart(10)} ${'end'.padStart(8)} ${'peak'.padStart(8)} ${'KiB/conn'.padStart(9)} ${'KiB/conn+sub'.padStart(12)} ${'CPU'.padStart(6)} ${'p99 ms'.padStart(8)} ${'tail p99'.padStart(8)}`);
  for (const [name, p] of Object.entries(result.perProcess)) {
    const r = p.rssMiB;
    console.log(`  ${name.padEnd(11)} ${String(p.connections ?? '-').padStart(6)} ${String(r.beforeClients).padStart(10)} ${String(r.afterConnect).padStart(10)} ` +
      `${String(r.afterSubscribe).padStart(10)} ${String(r.windowEnd).padStart(8)} ${String(r.peak).padStart(8)} ${String(p.kibPerConnection.connected ?? '-').padStart(9)} ` +
      `${String(p.kibPerConnection.subscribed ?? '-').padStart(12)} ${String(p.cpuCores).padStart(6)} ${String(p.latency?.p99 ?? '-').padStart(8)} ${String(p.latencyLiveTail?.p99 ?? '-').padStart(8)}`);
  }
  console.log('  (RSS in MiB; nginx = master + workers; CPU = cores used during the window)');
  if (result.stop) {
    console.log(`\n  SIGTERM: stack exited in ${result.stop.seconds} s (${JSON.stringify(result.stop.exit)}), reconnect notices ${result.stop.reconnectNotices}, ` +
      `subscription errors after the window ${JSON.stringify(result.stop.subscriptionErrorsAfterWindow)}`);
  }
  console.log(`  problems: ${symptoms.total ? JSON.stringify(symptoms.counts) : 'none'}`);
}

let exitCode = 0;
try {
  await main();
} catch (e) {
  exitCode = 1;
  symptoms.add('bench failed', { error: errMsg(e) });
  log('FAILED:', e?.stack ?? e);
  if (stack) result.stackLogTail = stack.log.slice(-6000);
} finally {
  await Promise.race([cleanup(), delay(60_000)]);
  clearTimeout(hardStop);
  printTable();
  writeResult();
  if (symptoms.total) exitCode = exitCode || 1;
  process.exit(exitCode);
}

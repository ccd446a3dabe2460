#!/usr/bin/env node
// Flow execution benchmark for the gateway's embedded default (see bench/README.md).
//
//   node bench/executions.mjs
//
// Starts the gateway (one process, SQLite store, in-process workers) on 127.0.0.1, creates one
// 10-node chain flow (NumberNode → 9 × MathNode add), then for each concurrency level runs C
// parallel loops of: create → subscribe executionEvents → start → wait for the terminal event.
// Reports executions/s, per-execution wall time and node:completed event latency, and writes
// bench/results/executions.json.
//
// Env knobs: BENCH_EXEC_LEVELS (1,8,32), BENCH_EXEC_SECONDS (8), BENCH_EXEC_WARMUP_SECONDS (1),
// BENCH_EXEC_TIMEOUT_SECONDS (15), BENCH_EXEC_BUDGET_SECONDS (80), BENCH_EXEC_CONNECTIONS (0 =
// one connection per loop), BENCH_GATEWAY_CMD (whitespace-split command; `--port N --host
// 127.0.0.1` is appended).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { delay, makeClient, REPO, sleep, startGateway, withTimeout } from '../conformance/lib/gateway.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const LEVELS = (env.BENCH_EXEC_LEVELS ?? '1,8,32')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isInteger(n) && n > 0);
const LEVEL_SECONDS = Number(env.BENCH_EXEC_SECONDS ?? 8);
const WARMUP_SECONDS = Number(env.BENCH_EXEC_WARMUP_SECONDS ?? 1);
const EXEC_TIMEOUT_MS = Number(env.BENCH_EXEC_TIMEOUT_SECONDS ?? 15) * 1000;
const BUDGET_SECONDS = Number(env.BENCH_EXEC_BUDGET_SECONDS ?? 80);
// Hard stop: whatever happens, results are written and the process exits by then.
const HARD_CAP_SECONDS = BUDGET_SECONDS + 8;
const CONNECTIONS = Number(env.BENCH_EXEC_CONNECTIONS ?? 0);
const GATEWAY_CMD = env.BENCH_GATEWAY_CMD
  ? env.BENCH_GATEWAY_CMD.trim().split(/\s+/)
  : [path.join(REPO, '.venv', 'bin', 'twistd'), '-n', '--pidfile=', 'chaingraph-gw'];
const CHAIN_NODES = 10;
const EXPECTED_RESULT = 1 + (CHAIN_NODES - 1); // 1 + 1 + … (9 additions of 1)
const TERMINAL = new Set(['flow:completed', 'flow:failed', 'flow:cancelled']);

const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
const remaining = () => BUDGET_SECONDS - elapsed();
/** Sub-millisecond wall-clock time (ms since the epoch). */
const nowMs = () => performance.timeOrigin + performance.now();

/** utime+stime of a process in seconds (Linux /proc), or null. */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime; USER_HZ is 100
  } catch {
    return null;
  }
}

/** Resident set size of a process in MiB (Linux /proc), or null. */
function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? +(Number(m[1]) / 1024).toFixed(1) : null;
  } catch {
    return null;
  }
}

function gitCommit() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO }).toString().trim();
  } catch {
    return null;
  }
}

/** Nearest-rank percentiles of a numeric array (rounded to 0.01 ms). */
function stats(xs) {
  if (!xs.length) return { n: 0, min: null, p50: null, p99: null, max: null, mean: null };
  const s = Float64Array.from(xs).sort();
  const pct = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  const r = (v) => +v.toFixed(2);
  let sum = 0;
  for (const v of s) sum += v;
  return { n: s.length, min: r(s[0]), p50: r(pct(50)), p99: r(pct(99)), max: r(s[s.length - 1]), mean: r(sum / s.length) };
}

/** NumberNode(num 1) → MathNode(a + 1) → … : 10 nodes, 9 data edges. */
function chainFlow() {
  const nodes = [{ id: 'n0', type: 'NumberNode', values: { num: 1 } }];
  const edges = [];
  for (let i = 1; i < CHAIN_NODES; i++) {
    nodes.push({ id: `m${i}`, type: 'MathNode', values: { b: 1, operation: 'add' } });
    edges.push({ from: i === 1 ? 'n0.num' : `m${i - 1}.result`, to: `m${i}.a` });
  }
  return { name: 'bench: 10-node chain', description: 'bench/executions.mjs', nodes, edges };
}

function resultValue(node) {
  const ports = node?.ports ? Object.values(node.ports) : [];
  return ports.find((p) => p?.config?.key === 'result')?.value;
}

/** Counts problems by message and keeps the first few examples with details. */
class Symptoms {
  constructor() {
    this.counts = {};
    this.examples = [];
  }
  add(kind, detail) {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    if (this.examples.length < 20) this.examples.push({ kind, at: +elapsed().toFixed(2), ...detail });
  }
  get total() {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }
}

const errMsg = (e) => String(e?.message ?? e).split('\n')[0].slice(0, 300);

/**
 * One execution: create → subscribe → (subscription started) → start → terminal event.
 * Never throws; returns {ok, wallMs, events, nodeLat: [ms…], terminalLat}.
 */
async function runOne(client, flowId, symptoms) {
  const tStart = performance.now();
  // one deadline for the whole execution, shared by every step
  const left = () => Math.max(1, EXEC_TIMEOUT_MS - (performance.now() - tStart));
  let executionId;
  try {
    ({ executionId } = await withTimeout(client.create.mutate({ flowId }), left(), 'create'));
  } catch (e) {
    symptoms.add('create failed', { error: errMsg(e) });
    return { ok: false };
  }
  const st = {
    events: 0,
    nextIndex: 0,
    indexProblems: 0,
    nodeCompleted: 0,
    terminal: null,
    terminalAt: 0,
    lastType: null,
    finalResult: undefined,
    nodeLat: [],
    terminalLat: null,
  };
  let sub;
  let resolveStarted;
  let resolveTerminal;
  let resolveDone;
  const started = new Promise((r) => (resolveStarted = r));
  const terminal = new Promise((r) => (resolveTerminal = r));
  const done = new Promise((r) => (resolveDone = r));
  try {
    sub = client.executionEvents.subscribe(
      { executionId },
      {
        onStarted: () => resolveStarted('started'),
        onData: (d) => {
          const rx = nowMs(); // first thing: client receive time
          const ev = d?.data ?? d;
          st.events++;
          if (ev.index !== st.nextIndex) st.indexProblems++;
          st.nextIndex = ev.index + 1;
          st.lastType = ev.type;
          const ts = ev.timestamp instanceof Date ? ev.timestamp.getTime() : NaN;
          if (ev.type === 'node:completed') {
            st.nodeCompleted++;
            if (Number.isFinite(ts)) st.nodeLat.push(rx - ts);
            if (ev.data?.node?.id === `m${CHAIN_NODES - 1}`) st.finalResult = resultValue(ev.data.node);
          } else if (TERMINAL.has(ev.type)) {
            st.terminal = ev.type;
            st.terminalAt = performance.now();
            if (Number.isFinite(ts)) st.terminalLat = rx - ts;
            resolveTerminal('terminal');
          }
        },
        onError: (e) => {
          st.error = errMsg(e);
          resolveStarted('error');
          resolveTerminal('error');
          resolveDone('error');
        },
        onComplete: () => {
          resolveStarted('complete');
          resolveTerminal('complete');
          resolveDone('complete');
        },
      },
    );
  } catch (e) {
    symptoms.add('subscribe threw', { executionId, error: errMsg(e) });
    return { ok: false };
  }
  const fail = (kind, extra = {}) => {
    symptoms.add(kind, {
      executionId,
      eventsReceived: st.events,
      lastEventType: st.lastType,
      error: st.error,
      ...extra,
    });
    try {
      sub.unsubscribe();
    } catch {
      /* ignore */
    }
    return { ok: false };
  };

  const s = await Promise.race([started, delay(left(), 'timeout')]);
  if (s === 'timeout') return fail('subscription not started within timeout');
  if (s === 'error') return fail('subscription error before start');
  try {
    await withTimeout(client.start.mutate({ executionId }), left(), 'start');
  } catch (e) {
    return fail('start failed', { error: errMsg(e) });
  }
  const t = await Promise.race([terminal, delay(left(), 'timeout')]);
  if (t === 'timeout') return fail('no terminal event within timeout');
  if (t === 'error') return fail('subscription error before terminal event');
  if (t === 'complete' && !st.terminal) return fail('subscription completed without a terminal event');
  const wallMs = st.terminalAt - tStart;
  // The server ends the subscription after the terminal event; wait briefly for that.
  const c = await Promise.race([done, delay(2000, 'timeout')]);
  if (c === 'timeout') {
    symptoms.add('subscription not completed 2 s after the terminal event', { executionId });
    sub.unsubscribe();
  } else if (c === 'error') {
    symptoms.add('subscription error after the terminal event', { executionId, error: st.error });
  }
  if (st.terminal !== 'flow:completed') symptoms.add(`terminal event ${st.terminal}`, { executionId });
  if (st.indexProblems) symptoms.add('event index gap or reorder', { executionId, problems: st.indexProblems });
  if (st.nodeCompleted !== CHAIN_NODES)
    symptoms.add('wrong number of node:completed events', { executionId, got: st.nodeCompleted, want: CHAIN_NODES });
  if (st.terminal === 'flow:completed' && st.finalResult !== EXPECTED_RESULT)
    symptoms.add('wrong final result', { executionId, got: st.finalResult, want: EXPECTED_RESULT });
  return { ok: st.terminal === 'flow:completed', wallMs, events: st.events, nodeLat: st.nodeLat, terminalLat: st.terminalLat };
}

/** One concurrency level: C loops for warm-up + measuring window, then drain. */
async function runLevel(gw, flowId, C, windowSeconds) {
  const symptoms = new Symptoms();
  const nConn = CONNECTIONS > 0 ? Math.min(CONNECTIONS, C) : C;
  const clients = Array.from({ length: nConn }, () => makeClient({ url: gw.url }));
  try {
    await withTimeout(
      Promise.all(clients.map((c) => c.client.system.echo.query('connect'))),
      10_000,
      `opening ${nConn} connection(s)`,
    );
  } catch (e) {
    await Promise.all(clients.map((c) => c.close()));
    return { concurrency: C, error: errMsg(e) };
  }

  let phase = 'warmup'; // warmup → measure → drain
  const sink = { nodeLat: [], terminalLat: [] };
  const wall = [];
  let completed = 0;
  let failed = 0;
  let events = 0;
  let inFlight = 0;
  const loop = async (i) => {
    const { client } = clients[i % nConn];
    while (phase !== 'drain' && !gw.exitInfo) {
      inFlight++;
      const r = await runOne(client, flowId, symptoms);
      inFlight--;
      // An execution counts when it finishes inside the window (as bench.mjs counts queries);
      // its event latencies count with it.
      if (phase === 'measure') {
        if (r.ok) {
          completed++;
          wall.push(r.wallMs);
          events += r.events;
          for (const v of r.nodeLat) sink.nodeLat.push(v);
          if (r.terminalLat != null) sink.terminalLat.push(r.terminalLat);
        } else failed++;
      }
      if (!r.ok && phase !== 'drain') await sleep(50); // do not spin on a failing server
    }
  };
  const loops = Array.from({ length: C }, (_, i) => loop(i));

  await sleep(WARMUP_SECONDS * 1000);
  const pid = gw.proc.pid;
  const cpu0 = cpuSeconds(pid);
  const ccpu0 = process.cpuUsage();
  const w0 = performance.now();
  phase = 'measure';
  await sleep(windowSeconds * 1000);
  phase = 'drain';
  const w1 = performance.now();
  const cpu1 = cpuSeconds(pid);
  const ccpu = process.cpuUsage(ccpu0);
  const seconds = (w1 - w0) / 1000;
  const inFlightAtEnd = inFlight;

  // Drain: let in-flight executions finish (each is bounded by EXEC_TIMEOUT_MS anyway).
  const drainCap = Math.max(2, Math.min(EXEC_TIMEOUT_MS / 1000 + 3, remaining() + 5)) * 1000;
  const drained = await Promise.race([Promise.all(loops).then(() => true), delay(drainCap, false)]);
  if (!drained) symptoms.add('loops still busy after the drain cap', { inFlight, drainCapMs: drainCap });
  await Promise.all(clients.map((c) => c.close()));

  const serverCpu = cpu0 == null || cpu1 == null ? null : +(cpu1 - cpu0).toFixed(2);
  return {
    concurrency: C,
    connections: nConn,
    seconds: +seconds.toFixed(3),
    completed,
    failed,
    executionsPerSecond: seconds ? +(completed / seconds).toFixed(1) : 0,
    eventsPerSecond: seconds ? Math.round(events / seconds) : 0,
    wallMs: stats(wall),
    nodeCompletedLatencyMs: stats(sink.nodeLat),
    terminalEventLatencyMs: stats(sink.terminalLat),
    serverCpuSeconds: serverCpu,
    serverCpuUtilisation: serverCpu == null ? null : +(serverCpu / seconds).toFixed(2),
    serverCpuMsPerExecution: serverCpu != null && completed ? +((serverCpu * 1000) / completed).toFixed(2) : null,
    clientCpuSeconds: +((ccpu.user + ccpu.system) / 1e6).toFixed(2),
    serverRssMiB: rssMiB(pid),
    inFlightAtWindowEnd: inFlightAtEnd,
    drained,
    symptoms: { total: symptoms.total, counts: symptoms.counts, examples: symptoms.examples },
  };
}

function printTable(levels) {
  const f = (v) => (v == null ? 'n/a' : String(v));
  const rows = [
    [
      'C',
      'exec/s',
      'done',
      'fail',
      'wall p50',
      'wall p99',
      'node:completed lat p50',
      'p99',
      'max',
      'n',
      'srv cpu s',
      'srv ms/exec',
      'problems',
    ],
  ];
  for (const l of levels) {
    if (l.error) {
      rows.push([f(l.concurrency), 'error', '', '', '', '', l.error, '', '', '', '', '', '']);
      continue;
    }
    rows.push([
      f(l.concurrency),
      f(l.executionsPerSecond),
      f(l.completed),
      f(l.failed),
      f(l.wallMs.p50),
      f(l.wallMs.p99),
      f(l.nodeCompletedLatencyMs.p50),
      f(l.nodeCompletedLatencyMs.p99),
      f(l.nodeCompletedLatencyMs.max),
      f(l.nodeCompletedLatencyMs.n),
      f(l.serverCpuSeconds),
      f(l.serverCpuMsPerExecution),
      f(l.symptoms.total),
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log('');
  for (const [k, r] of rows.entries()) {
    console.log(r.map((c, i) => c.padStart(widths[i])).join('  '));
    if (k === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  console.log('(times in ms; latency = client receive time − event.timestamp; srv = gateway process)');
}

function interestingLogLines(log) {
  return log
    .split('\n')
    .filter((l) => /error|traceback|exception|critical|warn|unhandled/i.test(l) && !/AUTH_ENABLED is false/.test(l))
    .slice(-40);
}

async function main() {
  const out = {
    date: new Date().toISOString(),
    commit: gitCommit(),
    host: { node: process.version, platform: `${os.platform()} ${os.release()}`, cpus: os.cpus().length, cpu: os.cpus()[0]?.model },
    settings: {
      levels: LEVELS,
      levelSeconds: LEVEL_SECONDS,
      warmupSeconds: WARMUP_SECONDS,
      execTimeoutSeconds: EXEC_TIMEOUT_MS / 1000,
      budgetSeconds: BUDGET_SECONDS,
      connections: CONNECTIONS || 'one per loop',
      flow: `${CHAIN_NODES}-node chain (NumberNode → ${CHAIN_NODES - 1} × MathNode add)`,
      gatewayCommand: GATEWAY_CMD.join(' '),
    },
    gateway: null,
    firstExecution: null,
    levels: [],
    error: null,
    totalSeconds: null,
  };
  let gw = null;
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    out.totalSeconds = +elapsed().toFixed(1);
    if (gw) {
      out.gateway = {
        ...out.gateway,
        exit: gw.exitInfo,
        logProblems: interestingLogLines(gw.output()),
      };
    }
    const dir = path.join(HERE, 'results');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'executions.json');
    fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
    console.log(`\nwrote ${path.relative(process.cwd(), file)} (${out.totalSeconds}s total)`);
  };
  // Last resort if something hangs past every per-operation timeout.
  const hard = setTimeout(() => {
    console.error(`!! hard time cap (${HARD_CAP_SECONDS}s) reached, writing partial results`);
    out.error = `hard time cap ${HARD_CAP_SECONDS}s reached`;
    write();
    try {
      gw?.proc?.kill('SIGKILL');
    } catch {
      /* ignore */
    }
    process.exit(2);
  }, HARD_CAP_SECONDS * 1000);
  hard.unref();

  try {
    gw = await startGateway({ command: GATEWAY_CMD, startTimeoutMs: 20_000 });
    const pid = gw.proc.pid;
    out.gateway = { pid, port: gw.port, startupCpuSeconds: cpuSeconds(pid), rssMiBAtStart: rssMiB(pid) };
    console.log(`started gateway on :${gw.port} (pid ${pid}) in ${elapsed().toFixed(1)}s`);

    const admin = makeClient({ url: gw.url });
    let flowId;
    try {
      ({ id: flowId } = await withTimeout(admin.client.flows.create.mutate({ flow: chainFlow() }), 10_000, 'flows.create'));
      // one execution end to end before measuring (imports, SQLite pages, JIT)
      const probe = new Symptoms();
      const r = await runOne(admin.client, flowId, probe);
      out.firstExecution = { ok: r.ok, wallMs: r.wallMs ?? null, symptoms: probe.examples };
      if (!r.ok || probe.total) {
        console.log(`!! first execution: ${JSON.stringify(probe.examples)}`);
        process.exitCode = 1;
      }
    } finally {
      await admin.close();
    }
    console.log(`flow ${flowId}: ${CHAIN_NODES} nodes, ${CHAIN_NODES - 1} edges`);

    for (let i = 0; i < LEVELS.length; i++) {
      const C = LEVELS[i];
      const levelsLeft = LEVELS.length - i;
      // Share what is left of the budget; reserve ~4 s per level for warm-up, connect and drain.
      const window = Math.min(LEVEL_SECONDS, (remaining() - levelsLeft * (WARMUP_SECONDS + 3)) / levelsLeft);
      if (window < 1) {
        console.log(`time budget (${BUDGET_SECONDS}s) reached, skipping C=${LEVELS.slice(i).join(',')}`);
        out.levels.push(...LEVELS.slice(i).map((c) => ({ concurrency: c, error: 'skipped: time budget' })));
        break;
      }
      if (gw.exitInfo) throw new Error(`gateway exited (${JSON.stringify(gw.exitInfo)})`);
      const res = await runLevel(gw, flowId, C, window);
      out.levels.push(res);
      if (res.error) {
        console.log(`C=${C}: ${res.error}`);
        continue;
      }
      const n = res.nodeCompletedLatencyMs;
      console.log(
        `C=${String(C).padStart(2)}: ${res.executionsPerSecond} exec/s (${res.completed} in ${res.seconds}s, ` +
          `failed ${res.failed}), wall p50 ${res.wallMs.p50} p99 ${res.wallMs.p99} ms, ` +
          `node:completed latency p50 ${n.p50} p99 ${n.p99} max ${n.max} ms, ` +
          `server cpu ${res.serverCpuSeconds}s (${res.serverCpuMsPerExecution} ms/exec), rss ${res.serverRssMiB} MiB` +
          (res.symptoms.total ? `, PROBLEMS ${JSON.stringify(res.symptoms.counts)}` : ''),
      );
    }
    out.gateway.totalCpuSeconds = cpuSeconds(gw.proc.pid);
    out.gateway.rssMiBAtEnd = rssMiB(gw.proc.pid);
    // Clock sanity: performance.timeOrigin + now() vs Date.now() (both on this machine).
    out.clientClockSkewMs = +(nowMs() - Date.now()).toFixed(2);
  } catch (err) {
    out.error = errMsg(err);
    console.error(`!! ${err.message}`);
    process.exitCode = 1;
  } finally {
    if (gw) {
      await gw.stop('SIGTERM', { timeoutMs: 5000 });
      out.gateway = { ...out.gateway, exit: gw.exitInfo };
    }
  }

  printTable(out.levels.filter((l) => l.seconds || l.error));
  if (out.gateway) {
    console.log(
      `gateway process: ${out.gateway.totalCpuSeconds ?? 'n/a'} CPU s total ` +
        `(startup ${out.gateway.startupCpuSeconds ?? 'n/a'} s), rss ${out.gateway.rssMiBAtStart ?? 'n/a'} → ${out.gateway.rssMiBAtEnd ?? 'n/a'} MiB`,
    );
  }
  for (const l of out.levels) {
    if (l.symptoms?.total) {
      console.log(`\nC=${l.concurrency} problems: ${JSON.stringify(l.symptoms.counts)}`);
      for (const ex of l.symptoms.examples.slice(0, 5)) console.log(`  ${JSON.stringify(ex)}`);
      process.exitCode = 1;
    }
  }
  write();
  clearTimeout(hard);
  const problems = gw ? interestingLogLines(gw.output()) : [];
  if (problems.length) console.log(`\ngateway log lines mentioning errors/warnings:\n  ${problems.slice(-10).join('\n  ')}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

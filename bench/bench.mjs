#!/usr/bin/env node
// Gateway vs reference benchmark with the official @trpc/client (see bench/README.md).
//
//   node bench/bench.mjs            (or: make bench)
//
// Env knobs: BENCH_ROUNDS (3), BENCH_QUERY_SECONDS (3), BENCH_INFLIGHT (100),
// BENCH_TICKS (200000), BENCH_SUB_CAP_SECONDS (15), BENCH_BUDGET_SECONDS (110),
// BENCH_ONLY=gateway|reference, BENCH_GATEWAY_CMD / BENCH_REFERENCE_CMD (whitespace-split
// commands; `--port N --host 127.0.0.1` is appended).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { makeClient, REPO, sleep, startGateway } from '../conformance/lib/gateway.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const QUERY_SECONDS = Number(env.BENCH_QUERY_SECONDS ?? 3);
const INFLIGHT = Number(env.BENCH_INFLIGHT ?? 100);
const TICKS = Number(env.BENCH_TICKS ?? 200_000);
const SUB_CAP_SECONDS = Number(env.BENCH_SUB_CAP_SECONDS ?? 15);
const BUDGET_SECONDS = Number(env.BENCH_BUDGET_SECONDS ?? 110);
const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;

const SERVERS = {
  gateway: {
    label: 'gateway (Python)',
    command: env.BENCH_GATEWAY_CMD
      ? env.BENCH_GATEWAY_CMD.trim().split(/\s+/)
      : [path.join(REPO, '.venv', 'bin', 'twistd'), '-n', '--pidfile=', 'chaingraph-gw'],
  },
  reference: {
    label: 'reference (@trpc/server ws)',
    command: env.BENCH_REFERENCE_CMD
      ? env.BENCH_REFERENCE_CMD.trim().split(/\s+/)
      : [process.execPath, path.join(HERE, 'reference-server.mjs')],
  },
};
const names = env.BENCH_ONLY ? [env.BENCH_ONLY] : ['gateway', 'reference'];

/** utime+stime of a process in seconds (Linux /proc), or null. */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
    return ticks / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

function withCpu(gw, fn) {
  return async () => {
    const pid = gw.proc.pid;
    const c0 = cpuSeconds(pid);
    const res = await fn();
    const c1 = cpuSeconds(pid);
    res.serverCpuSeconds = c0 == null || c1 == null ? null : +(c1 - c0).toFixed(2);
    return res;
  };
}

/** (a) system.echo round trips/s with INFLIGHT concurrent callers on one connection. */
async function benchQueries(gw) {
  const c = makeClient({ url: gw.url });
  try {
    const payload = (i) => ({ i, text: 'hello world', at: new Date(1_700_000_000_000 + i) });
    // warm-up
    await Promise.all(Array.from({ length: INFLIGHT }, (_, i) => c.client.system.echo.query(payload(i))));
    let stop = false;
    let done = 0;
    let errors = 0;
    const warmUntil = performance.now() + 300;
    let start = 0;
    const worker = async (w) => {
      let i = w;
      while (!stop) {
        try {
          const r = await c.client.system.echo.query(payload(i));
          if (r.i !== i) errors++;
        } catch {
          errors++;
        }
        if (start) done++;
        else if (performance.now() >= warmUntil) start = performance.now();
        i += INFLIGHT;
      }
    };
    const workers = Array.from({ length: INFLIGHT }, (_, w) => worker(w));
    await sleep(300 + QUERY_SECONDS * 1000);
    stop = true;
    const end = performance.now();
    const counted = done;
    await Promise.all(workers);
    const seconds = (end - (start || end)) / 1000;
    return { ops: counted, seconds: +seconds.toFixed(3), perSecond: seconds ? Math.round(counted / seconds) : 0, errors };
  } finally {
    await c.close();
  }
}

/** (b) system.ticks events/s, one subscriber, first → last event. */
async function benchTicks(gw) {
  const c = makeClient({ url: gw.url });
  try {
    await c.client.system.echo.query('warm-up');
    let first = 0;
    let last = 0;
    let n = 0;
    let outOfOrder = 0;
    let sub;
    const result = await new Promise((resolve) => {
      const cap = setTimeout(() => resolve('capped'), SUB_CAP_SECONDS * 1000);
      sub = c.client.system.ticks.subscribe(
        { count: TICKS, intervalMs: 0 },
        {
          onData: (d) => {
            const now = performance.now();
            if (n === 0) first = now;
            else if (d.data.i !== n) outOfOrder++;
            last = now;
            n++;
          },
          onError: (e) => {
            clearTimeout(cap);
            resolve(`error: ${e.message}`);
          },
          onComplete: () => {
            clearTimeout(cap);
            resolve('complete');
          },
        },
      );
    });
    sub.unsubscribe();
    const seconds = (last - first) / 1000;
    return {
      events: n,
      complete: result === 'complete' && n === TICKS,
      status: result,
      seconds: +seconds.toFixed(3),
      perSecond: seconds > 0 ? Math.round((n - 1) / seconds) : 0,
      outOfOrder,
    };
  } finally {
    await c.close();
  }
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function gitCommit() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO }).toString().trim();
  } catch {
    return null;
  }
}

async function main() {
  const servers = {};
  const results = {};
  for (const name of names) {
    results[name] = { label: SERVERS[name].label, queries: [], ticks: [], error: null };
    try {
      servers[name] = await startGateway({ command: SERVERS[name].command, startTimeoutMs: 20_000 });
      console.log(`started ${SERVERS[name].label} on :${servers[name].port} (pid ${servers[name].proc.pid})`);
    } catch (err) {
      results[name].error = String(err.message).split('\n').slice(0, 30).join('\n');
      console.error(`!! could not start ${name}: ${results[name].error}`);
    }
  }
  const active = names.filter((n) => servers[n]);
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      // alternate the order: A B, B A, A B …
      const order = round % 2 ? active : [...active].reverse();
      for (const name of order) {
        if (elapsed() > BUDGET_SECONDS) {
          console.log(`time budget reached (${BUDGET_SECONDS}s), stopping early`);
          break;
        }
        const gw = servers[name];
        const q = await withCpu(gw, () => benchQueries(gw))();
        results[name].queries.push(q);
        console.log(
          `round ${round} ${name.padEnd(9)} queries: ${q.perSecond} rt/s (${q.ops} in ${q.seconds}s, errors ${q.errors}, server cpu ${q.serverCpuSeconds}s)`,
        );
        const t = await withCpu(gw, () => benchTicks(gw))();
        results[name].ticks.push(t);
        console.log(
          `round ${round} ${name.padEnd(9)} ticks:   ${t.perSecond} ev/s (${t.events} in ${t.seconds}s, ${t.status}, server cpu ${t.serverCpuSeconds}s)`,
        );
      }
    }
  } finally {
    for (const gw of Object.values(servers)) await gw.stop('SIGTERM', { timeoutMs: 3000 });
  }

  const summary = {};
  for (const name of names) {
    const r = results[name];
    summary[name] = {
      queriesPerSecond: median(r.queries.map((x) => x.perSecond)),
      ticksPerSecond: median(r.ticks.map((x) => x.perSecond)),
      ticksComplete: r.ticks.every((x) => x.complete),
      queryErrors: r.queries.reduce((a, x) => a + x.errors, 0),
      // server CPU time per operation (µs): meaningful even when the client is the bottleneck
      serverCpuMicrosPerQuery: median(
        r.queries.map((x) => (x.serverCpuSeconds != null && x.ops ? +((x.serverCpuSeconds * 1e6) / x.ops).toFixed(1) : NaN)),
      ),
      serverCpuMicrosPerEvent: median(
        r.ticks.map((x) => (x.serverCpuSeconds != null && x.events ? +((x.serverCpuSeconds * 1e6) / x.events).toFixed(1) : NaN)),
      ),
      error: r.error,
    };
  }
  const ratio = (k) =>
    summary.gateway?.[k] && summary.reference?.[k] ? +(summary.gateway[k] / summary.reference[k]).toFixed(3) : null;
  const ratios = {
    queriesPerSecond: ratio('queriesPerSecond'),
    ticksPerSecond: ratio('ticksPerSecond'),
    serverCpuMicrosPerQuery: ratio('serverCpuMicrosPerQuery'),
    serverCpuMicrosPerEvent: ratio('serverCpuMicrosPerEvent'),
  };

  const fmt = (v) => (v == null ? 'n/a' : String(v));
  const rows = [
    ['metric (median)', 'gateway', 'reference', 'gateway/reference'],
    [
      `system.echo round trips/s (${INFLIGHT} in flight)`,
      fmt(summary.gateway?.queriesPerSecond),
      fmt(summary.reference?.queriesPerSecond),
      fmt(ratios.queriesPerSecond),
    ],
    [
      `system.ticks events/s (count ${TICKS})`,
      fmt(summary.gateway?.ticksPerSecond),
      fmt(summary.reference?.ticksPerSecond),
      fmt(ratios.ticksPerSecond),
    ],
    [
      'server CPU µs per echo round trip',
      fmt(summary.gateway?.serverCpuMicrosPerQuery),
      fmt(summary.reference?.serverCpuMicrosPerQuery),
      fmt(ratios.serverCpuMicrosPerQuery),
    ],
    [
      'server CPU µs per ticks event',
      fmt(summary.gateway?.serverCpuMicrosPerEvent),
      fmt(summary.reference?.serverCpuMicrosPerEvent),
      fmt(ratios.serverCpuMicrosPerEvent),
    ],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log('');
  for (const [k, r] of rows.entries()) {
    console.log(r.map((c, i) => (i ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  '));
    if (k === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  for (const name of names) {
    if (summary[name].error) console.log(`\n${name}: not measured (${summary[name].error.split('\n')[0]})`);
    else if (!summary[name].ticksComplete) console.log(`\n${name}: some ticks runs did not complete (see JSON)`);
  }

  const out = {
    date: new Date().toISOString(),
    commit: gitCommit(),
    host: { node: process.version, platform: `${os.platform()} ${os.release()}`, cpus: os.cpus().length, cpu: os.cpus()[0]?.model },
    settings: { rounds: ROUNDS, querySeconds: QUERY_SECONDS, inflight: INFLIGHT, ticks: TICKS, subCapSeconds: SUB_CAP_SECONDS },
    summary,
    ratios,
    rounds: results,
    totalSeconds: +elapsed().toFixed(1),
  };
  const dir = path.join(HERE, 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'latest.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(process.cwd(), path.join(dir, 'latest.json'))} (${out.totalSeconds}s total)`);
  if (names.some((n) => summary[n].error)) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

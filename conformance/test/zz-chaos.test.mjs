// Chaos: PostgreSQL and Kafka restarted during a run (distributed mode, 1 api + 1 worker).
//
// Requirement: losing PostgreSQL or Kafka for a while — /ready says which, requests fail with
// SERVICE_UNAVAILABLE rather than hanging, and everything resumes when they are back, with
// nothing acknowledged lost (the client-visible event stream stays contiguous, one terminal event).
//
// This file STOPS AND STARTS the local servers, so it runs only when
//   * DATABASE_URL and KAFKA_BROKERS are set and point at what scripts/services manages, and
//   * `scripts/services/services.sh status` says both servers are up and *ours* (started by that
//     script). A server we did not start is never touched.
// Named zz-* so that it runs last. Whatever happens, the services are started again in `after`.
//
// 1. Kafka: stopped after the first node of a 6 x 500 ms run completed, for KAFKA_DOWN_MS (longer
//    than the producer's delivery timeout). While down: /ready (api and worker) is 503 naming
//    kafka; create+start of another execution answers SERVICE_UNAVAILABLE within ~12 s and leaves
//    its row 'created'. Back up: the first run's `executionEvents` stream ends (contiguous indexes,
//    one terminal event, flow:completed), /ready is 200, a new execution completes, and the refused
//    one can be started.
// 2. PostgreSQL: stopped for ~3-6 s (longer than the 3 s lease) while PG_RUNS runs are in flight.
//    While down: /ready names postgres; getExecutionDetails and create answer SERVICE_UNAVAILABLE
//    (not a hang). Back up: each run's stream is consistent (one flow:started, no node twice: the
//    run resumes, it is not run again) and ends flow:completed, its row is 'completed', /ready is
//    200, a new execution completes.
// NB: the recovery sweep of *any* worker on the same database adopts runs whose lease expired,
// whatever its KAFKA_TOPICS_PREFIX: run this file while no other distributed gateway uses the
// database, or a PostgreSQL outage shows up here as a takeover (execution:restarted).
// Each test collects every problem it sees and fails once, listing them with the gateways' logs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';

import { REPO, delay, makeClient, startGateway, withTimeout } from '../lib/gateway.mjs';

const { DATABASE_URL, KAFKA_BROKERS } = process.env;
const SVC_DIR = path.join(REPO, 'scripts', 'services');
const STATE_DIR = path.resolve(process.env.CHAINGRAPH_SERVICES_DIR || path.join(REPO, 'var', 'services'));
const TERMINAL = new Set(['flow:completed', 'flow:failed', 'flow:cancelled']);
// How long Kafka stays down (stop -> start; the broker then takes ~5 s to answer). Live publishes
// made during the outage fail for good after the producer's delivery timeout (message.timeout.ms =
// 10 s), and the worker's event writer publishes one failing batch after the other, so the run's
// terminal event goes out ~20 s after the stop and is lost ~30 s after it: the stream must then
// be completed from the stored log. A correct server passes whatever the duration.
const KAFKA_DOWN_MS = 32_000;
// PostgreSQL: at least this long (the checks below may keep it down a little longer).
const PG_DOWN_MS = 3000;
// Runs in flight while PostgreSQL is down (<= CHAINGRAPH_WORKER_CONCURRENCY): each is one more
// chance to hit the race between finalising a run and the recovery sweep (see the PG test).
const PG_RUNS = 4;

function skipReason() {
  // It stops and starts the shared PostgreSQL and Kafka: only when asked (make test does, last).
  if (process.env.CHAINGRAPH_CHAOS_TESTS !== '1') return 'CHAINGRAPH_CHAOS_TESTS=1 is not set';
  if (!DATABASE_URL || !KAFKA_BROKERS) return 'DATABASE_URL and KAFKA_BROKERS are not set';
  const env = spawnSync('bash', [path.join(SVC_DIR, 'services.sh'), 'env'], { encoding: 'utf8', timeout: 10_000 });
  const ours = Object.fromEntries(
    (env.stdout ?? '').trim().split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  if (ours.DATABASE_URL !== DATABASE_URL || ours.KAFKA_BROKERS !== KAFKA_BROKERS) {
    return `DATABASE_URL/KAFKA_BROKERS are not the servers scripts/services manages (${ours.DATABASE_URL}, ${ours.KAFKA_BROKERS})`;
  }
  const st = spawnSync('bash', [path.join(SVC_DIR, 'services.sh'), 'status'], { encoding: 'utf8', timeout: 30_000 });
  const out = `${st.stdout ?? ''}`;
  if (!/^postgres: up \(ours,/m.test(out) || !/^kafka: up \(ours,/m.test(out)) {
    return `the services were not started by scripts/services/services.sh (status: ${out.trim().replace(/\n/g, ' | ')})`;
  }
  return false;
}
const skip = skipReason();

// ---------------------------------------------------------------------------------------------
// Stopping / starting one of our services (per-service scripts, under services.sh's lock)
// ---------------------------------------------------------------------------------------------

const stopped = new Set(); // services this file stopped and has not started again

function runService(name, action, timeoutMs = 120_000) {
  const script = path.join(SVC_DIR, name === 'postgres' ? 'postgres.sh' : 'kafka.sh');
  const lock = path.join(STATE_DIR, '.lock');
  // flock -o: the lock is held by flock itself, never inherited by the daemons started
  const [cmd, args] = fs.existsSync(lock)
    ? ['flock', ['-o', '-w', '60', lock, 'bash', script, action]]
    : ['bash', [script, action]];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${name}.sh ${action} exited ${code}:\n${out}`));
    });
  });
}

async function serviceDown(name) {
  stopped.add(name);
  await runService(name, 'down');
}

async function serviceUp(name) {
  await runService(name, 'up');
  stopped.delete(name);
}

// ---------------------------------------------------------------------------------------------
// Gateways and helpers
// ---------------------------------------------------------------------------------------------

const prefix = `chaos-${crypto.randomBytes(4).toString('hex')}.`;
const gws = {};
let cl = null; // {client, close}
let c = null; // the tRPC client

function env(role) {
  return {
    EXECUTION_MODE: 'distributed',
    CHAINGRAPH_ROLE: role,
    DATABASE_URL,
    KAFKA_BROKERS,
    KAFKA_TOPICS_PREFIX: prefix,
    CHAINGRAPH_LEASE_SECONDS: '3',
    CHAINGRAPH_RECOVERY_SWEEP_SECONDS: '0.5',
    CHAINGRAPH_WORKER_CONCURRENCY: '4',
  };
}

const SLEEPS = {
  name: 'six sleeps',
  nodes: Array.from({ length: 6 }, (_, i) => ({ id: `s${i + 1}`, type: 'SleepNode', values: { duration: 500 } })),
  edges: Array.from({ length: 5 }, (_, i) => ({ from: `s${i + 1}.__success`, to: `s${i + 2}.__execute` })),
};
const QUICK = {
  name: 'quick',
  nodes: [{ id: 'q1', type: 'SleepNode', values: { duration: 50 } }],
  edges: [],
};

const codeOf = (e) => e?.data?.code ?? e?.shape?.data?.code ?? e?.code;
const describe = (e) => `${codeOf(e) ?? e?.name}: ${String(e?.message ?? e).split('\n')[0]}`;

/** Runs `fn()` with a deadline; never throws: {ok, value, error, ms, hung}. */
async function timed(fn, ms) {
  const t0 = Date.now();
  try {
    const value = await withTimeout(Promise.resolve().then(fn), ms, 'call');
    return { ok: true, value, ms: Date.now() - t0 };
  } catch (error) {
    const hung = /^timed out after/.test(error?.message ?? '');
    return { ok: false, error, ms: Date.now() - t0, hung };
  }
}

async function getReady(gw, timeoutMs = 10_000) {
  const t0 = Date.now();
  try {
    const res = await fetch(`${gw.httpUrl}/ready`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = await res.json().catch(() => null);
    return { status: res.status, body, ms: Date.now() - t0 };
  } catch (e) {
    return { status: 0, body: null, error: e.message, ms: Date.now() - t0 };
  }
}

/** Polls /ready until pred(answer) (each answer recorded); returns {hit, answers, ms}. */
async function pollReady(gw, pred, timeoutMs) {
  const t0 = Date.now();
  const answers = [];
  while (Date.now() - t0 < timeoutMs) {
    const r = await getReady(gw, Math.max(500, timeoutMs - (Date.now() - t0)));
    answers.push(r);
    if (pred(r)) return { hit: r, answers, ms: Date.now() - t0 };
    await delay(200);
  }
  return { hit: null, answers, ms: Date.now() - t0 };
}

const fmtReady = (r) => `${r.status} ${r.ms}ms ${r.error ?? JSON.stringify(r.body?.checks ?? r.body)}`;

/** Follows `executionEvents` (tracked, ends after the terminal event) with the official client. */
function follow(executionId) {
  const rec = { events: [], starts: 0, error: null, completed: 0, ids: [] };
  let resolveDone;
  rec.done = new Promise((r) => (resolveDone = r));
  let resolveStarted;
  rec.started = new Promise((r) => (resolveStarted = r));
  const waiters = new Set();
  const handle = c.executionEvents.subscribe(
    { executionId },
    {
      onStarted: () => {
        rec.starts++;
        resolveStarted();
      },
      onData: (d) => {
        rec.ids.push(d.id);
        rec.events.push(d.data);
        for (const w of waiters) w();
      },
      onError: (e) => {
        rec.error = e;
        resolveDone('error');
        for (const w of waiters) w();
      },
      onComplete: () => {
        rec.completed++;
        resolveDone('complete');
      },
    },
  );
  rec.unsubscribe = () => handle.unsubscribe();
  rec.waitFor = (pred, timeoutMs, what) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const hit = rec.events.find(pred);
        if (hit) {
          cleanup();
          resolve(hit);
        } else if (rec.error) {
          cleanup();
          reject(new Error(`subscription failed while waiting for ${what}: ${describe(rec.error)}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${rec.events.map((e) => `${e.index}:${e.type}`).join(' ')}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  return rec;
}

/** Problems with a received stream (empty = consistent). */
function streamProblems(rec, { expectType = 'flow:completed' } = {}) {
  const p = [];
  const idx = rec.events.map((e) => e.index);
  const want = idx.map((_, i) => i);
  if (idx.join(',') !== want.join(',')) p.push(`indexes not contiguous from 0 without duplicates: ${idx.join(',')}`);
  const bad = rec.ids.filter((id, i) => id !== String(rec.events[i].index));
  if (bad.length) p.push(`tracked ids != String(index): ${bad.join(',')}`);
  const terminal = rec.events.filter((e) => TERMINAL.has(e.type));
  if (terminal.length !== 1) p.push(`${terminal.length} terminal events (want exactly 1)`);
  else if (rec.events.at(-1) !== terminal[0]) p.push('the terminal event is not the last one');
  if (terminal.length && expectType && rec.events.at(-1).type !== expectType) {
    const last = rec.events.at(-1);
    p.push(`run ended ${last.type}${last.data?.error ? ` (${last.data.error.message ?? last.data.error})` : ''}, want ${expectType}`);
  }
  // one run, not two: a flow that runs again from the start (same or other worker) shows a
  // second flow:started and nodes that start/complete twice
  const count = (pred) => rec.events.filter(pred).length;
  const starts = count((e) => e.type === 'flow:started');
  const restarts = count((e) => e.type === 'execution:restarted');
  if (starts !== 1) {
    p.push(`flow:started ${starts} times: the flow ran ${starts} times in one execution ` +
      `(${restarts ? `${restarts} execution:restarted` : 'no execution:restarted event'}) at indexes ` +
      rec.events.filter((e) => e.type === 'flow:started').map((e) => e.index).join(','));
  } else if (restarts) {
    p.push(`${restarts} execution:restarted event(s)`);
  }
  const completedTwice = [...new Set(rec.events.filter((e) => e.type === 'node:completed').map((e) => e.data?.node?.id))]
    .filter((id) => count((e) => e.type === 'node:completed' && e.data?.node?.id === id) > 1);
  if (completedTwice.length) p.push(`node(s) completed more than once: ${completedTwice.join(',')}`);
  if (rec.error) p.push(`subscription errored: ${describe(rec.error)}`);
  return p;
}

const types = (rec) => rec.events.map((e) => `${e.index}:${e.type}${e.data?.node?.id ? `(${e.data.node.id})` : ''}`).join(' ');

/** The last lines of both gateways' logs (for failure messages); librdkafka's connection noise is counted, not shown. */
function logs(lines = 40) {
  const tail = (s) => {
    const all = s.split('\n').filter((l) => l.trim() && !/GET \/(ready|health)/.test(l));
    const noisy = (l) => /\[thrd:[^\]]*\]:/.test(l);
    const kept = all.filter((l) => !noisy(l));
    const n = all.length - kept.length;
    return `${n ? `    (${n} librdkafka connection lines left out)\n` : ''}${kept.slice(-lines).map((l) => `    ${l.slice(0, 400)}`).join('\n')}`;
  };
  const files = [];
  for (const [name, gw] of Object.entries(gws)) {
    const file = path.join(os.tmpdir(), `zz-chaos-${prefix}${name}.log`);
    try {
      fs.writeFileSync(file, gw.output());
      files.push(file);
    } catch {
      /* best effort */
    }
  }
  return `  (full logs: ${files.join(' ')})\n${Object.entries(gws)
    .map(([name, gw]) => `  --- ${name} (port ${gw.port}) ---\n${tail(gw.output())}`)
    .join('\n')}`;
}

/** What the server holds for a run: its row status and the events a fresh subscription replays. */
async function storedSummary(executionId) {
  const row = await timed(() => c.getExecutionDetails.query({ executionId }), 5000);
  const fresh = follow(executionId);
  await withTimeout(fresh.done, 3000, 'replay').catch(() => null);
  fresh.unsubscribe();
  const last = fresh.events.at(-1);
  return `row ${row.ok ? row.value.status : describe(row.error)}; a new subscription replays ${fresh.events.length} events` +
    `${last ? ` (last ${last.index}:${last.type})` : ''}${fresh.completed ? ' and completes' : ''}`;
}

/** Creates, follows and starts a run of `flow`; resolves with {executionId, rec} once it ended (or timeout). */
async function runToEnd(flowId, timeoutMs) {
  const t0 = Date.now();
  const { executionId } = await c.create.mutate({ flowId });
  const rec = follow(executionId);
  await withTimeout(rec.started, 5000, 'subscription started');
  const t1 = Date.now();
  await c.start.mutate({ executionId });
  const t2 = Date.now();
  const end = await withTimeout(rec.done, timeoutMs, `run ${executionId} to end`).catch((e) => `timeout: ${e.message}`);
  const timing = `create+subscribe ${t1 - t0} ms, start ${t2 - t1} ms, run ${Date.now() - t2} ms`;
  return { executionId, rec, end, timing };
}

before(async () => {
  if (skip) return;
  // worker first: it creates the topics
  gws.worker = await startGateway({ env: env('worker'), startTimeoutMs: 40_000 });
  gws.api = await startGateway({ env: env('api'), startTimeoutMs: 40_000 });
  cl = makeClient({ url: gws.api.url });
  c = cl.client;
});

after(async () => {
  // Services first: whatever failed, leave them up.
  for (const name of [...stopped]) {
    try {
      await serviceUp(name);
    } catch (e) {
      console.error(`zz-chaos: could not start ${name} again: ${e.message}`);
    }
  }
  await cl?.close().catch(() => null);
  for (const gw of Object.values(gws)) await gw.stop('SIGTERM', { timeoutMs: 3000 }).catch(() => null);
  if (!skip) deleteTopics();
});

/** Deletes this file's topics (every broker restart loads all partitions: leftovers slow it down). */
function deleteTopics() {
  const py = path.join(REPO, '.venv', 'bin', 'python');
  if (!fs.existsSync(py)) return;
  const code = [
    'import sys',
    'from confluent_kafka.admin import AdminClient',
    'a = AdminClient({"bootstrap.servers": sys.argv[1]})',
    'ts = [t for t in a.list_topics(timeout=5).topics if t.startswith(sys.argv[2])]',
    'for f in (a.delete_topics(ts, operation_timeout=10).values() if ts else []): f.result()',
  ].join('\n');
  const r = spawnSync(py, ['-c', code, KAFKA_BROKERS, prefix], { encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) console.error(`zz-chaos: could not delete the ${prefix}* topics: ${r.stderr || r.error}`);
}

// ---------------------------------------------------------------------------------------------

test('Kafka restarted during a run: /ready names kafka, calls fail fast, the run and new ones complete', { skip, timeout: 80_000 }, async (t) => {
  const problems = [];
  const flow = await c.flows.create.mutate({ flow: SLEEPS });
  const { executionId } = await c.create.mutate({ flowId: flow.id });
  const rec = follow(executionId);
  await withTimeout(rec.started, 5000, 'subscription started');
  await c.start.mutate({ executionId });
  await rec.waitFor((e) => e.type === 'node:completed', 10_000, 'the first node:completed');

  await serviceDown('kafka');
  const downAt = Date.now();
  t.diagnostic(`kafka stopped after event ${rec.events.at(-1).index}`);
  let second = null;
  try {
    // /ready on the api and on the worker: 503 naming kafka within a few seconds
    const [ready, wready] = await Promise.all([
      pollReady(gws.api, (r) => r.status === 503 && (r.body?.failing ?? []).includes('kafka'), 8000),
      pollReady(gws.worker, (r) => r.status === 503 && (r.body?.failing ?? []).includes('kafka'), 8000),
    ]);
    for (const [name, r] of [['api', ready], ['worker', wready]]) {
      t.diagnostic(`${name} /ready while kafka down: ${r.answers.map(fmtReady).join(' ; ')}`);
      if (!r.hit) problems.push(`${name} /ready did not answer 503 naming kafka within 8 s: ${r.answers.map(fmtReady).join(' ; ')}`);
      else if ((r.hit.body.failing ?? []).includes('postgres')) problems.push(`${name} /ready also names postgres: ${fmtReady(r.hit)}`);
    }

    // create + start of another execution: SERVICE_UNAVAILABLE within ~12 s, not a hang
    const t0 = Date.now();
    const created = await timed(() => c.create.mutate({ flowId: flow.id }), 15_000);
    t.diagnostic(`create while kafka down: ${created.ok ? `ok ${created.value.executionId}` : describe(created.error)} after ${created.ms} ms`);
    let failure = created.ok ? null : created;
    let startHung = false;
    if (created.ok) {
      second = created.value.executionId;
      if (created.ms > 3000) problems.push(`create took ${created.ms} ms while kafka was down, then succeeded`);
      const started = await timed(() => c.start.mutate({ executionId: second }), Math.max(22_000 - created.ms, 2000));
      t.diagnostic(`start while kafka down: ${started.ok ? 'ok' : describe(started.error)} after ${started.ms} ms`);
      if (started.ok) problems.push(`start succeeded while kafka was down (${started.ms} ms)`);
      failure = started.ok ? null : started;
      startHung = !!started.hung;
    }
    const total = Date.now() - t0;
    if (failure?.hung) problems.push(`create+start hung: no answer within ${total} ms`);
    else if (failure && codeOf(failure.error) !== 'SERVICE_UNAVAILABLE') problems.push(`create+start failed with ${describe(failure.error)}, want SERVICE_UNAVAILABLE`);
    else if (failure && total > 12_500) problems.push(`create+start answered SERVICE_UNAVAILABLE only after ${total} ms (want <= ~12 s)`);
    if (second && !startHung) {
      const row = await timed(() => c.getExecutionDetails.query({ executionId: second }), 8000);
      t.diagnostic(`the refused execution's row: ${row.ok ? row.value.status : describe(row.error)}`);
      if (!row.ok) problems.push(`getExecutionDetails while kafka down: ${describe(row.error)} after ${row.ms} ms`);
      else if (row.value.status !== 'created') problems.push(`the execution whose start failed is '${row.value.status}', want 'created'`);
    } else if (startHung) {
      second = null; // its start may still go through later: do not retry it
    }
    // Stay down longer than the producer's delivery timeout (message.timeout.ms 10 s): publishes
    // made during the outage fail for good, and the stream must still reach its subscribers.
    const left = KAFKA_DOWN_MS - (Date.now() - downAt);
    if (left > 0) await delay(left);
  } finally {
    t.diagnostic(`kafka down for ${Date.now() - downAt} ms; starting it again`);
    const t0 = Date.now();
    await serviceUp('kafka');
    t.diagnostic(`kafka.sh up took ${Date.now() - t0} ms`);
  }
  const upAt = Date.now();

  // the first run ends, the stream is consistent
  const end = await withTimeout(rec.done, 10_000, 'the first run to end').catch((e) => `timeout: ${e.message}`);
  t.diagnostic(`first run: ${end} ${Date.now() - upAt} ms after kafka was back: ${types(rec)}`);
  if (end !== 'complete') {
    problems.push(`first run's subscription: ${end === 'error' ? `error ${describe(rec.error)}` : end} (events: ${types(rec)})`);
    problems.push(`  ... while the server has: ${await storedSummary(executionId)}`);
  }
  problems.push(...streamProblems(rec).map((p) => `first run: ${p}`));

  // ready again
  const ready = await pollReady(gws.api, (r) => r.status === 200, 15_000);
  if (!ready.hit) problems.push(`api /ready not 200 within 15 s after kafka came back: ${ready.answers.slice(-3).map(fmtReady).join(' ; ')}`);
  else t.diagnostic(`api /ready 200 ${Date.now() - upAt} ms after kafka was back`);

  // a new execution runs to completion (and the one refused while kafka was down can be started now)
  const fresh = await (async () => runToEnd((await c.flows.create.mutate({ flow: QUICK })).id, 20_000))().catch((e) => ({ failed: e }));
  if (fresh.failed) problems.push(`new execution after kafka came back: ${describe(fresh.failed)}`);
  else {
    t.diagnostic(`new execution: ${fresh.end} (${fresh.timing}): ${types(fresh.rec)}`);
    if (fresh.end !== 'complete') problems.push(`new execution after kafka came back: ${fresh.end}; events ${types(fresh.rec)}`);
    problems.push(...streamProblems(fresh.rec).map((p) => `new execution: ${p}`));
  }
  if (second) {
    const retry = await timed(async () => {
      const r2 = follow(second);
      await withTimeout(r2.started, 5000, 'subscription started');
      await c.start.mutate({ executionId: second });
      const e2 = await withTimeout(r2.done, 20_000, 'refused run to end');
      return { r2, e2 };
    }, 26_000);
    t.diagnostic(`the execution refused while kafka was down, started now: ${retry.ok ? retry.value.e2 : describe(retry.error)} after ${retry.ms} ms`);
    if (!retry.ok) problems.push(`starting the execution refused while kafka was down, now: ${describe(retry.error)}`);
    else problems.push(...streamProblems(retry.value.r2).map((p) => `execution refused earlier, started now: ${p}`));
  }

  assert.deepEqual(problems, [], `kafka restart:\n  ${problems.join('\n  ')}\n gateway logs:\n${logs()}`);
});

test('PostgreSQL restarted during a run: /ready names postgres, queries fail fast, the runs and new ones complete', { skip, timeout: 60_000 }, async (t) => {
  const problems = [];
  const flow = await c.flows.create.mutate({ flow: SLEEPS });
  // PG_RUNS runs at once (same shape, more chances to hit the races around finalising a run)
  const runs = [];
  for (let i = 0; i < PG_RUNS; i++) {
    const { executionId } = await c.create.mutate({ flowId: flow.id });
    const rec = follow(executionId);
    await withTimeout(rec.started, 5000, 'subscription started');
    runs.push({ executionId, rec });
  }
  await Promise.all(runs.map(({ executionId }) => c.start.mutate({ executionId })));
  await Promise.all(runs.map(({ rec }) => rec.waitFor((e) => e.type === 'node:completed', 10_000, 'the first node:completed')));
  const { executionId } = runs[0];

  await serviceDown('postgres');
  const downAt = Date.now();
  t.diagnostic(`postgres stopped after events ${runs.map(({ rec }) => rec.events.at(-1).index).join(', ')}`);
  try {
    const [ready, details, created, details2] = await Promise.all([
      pollReady(gws.api, (r) => r.status === 503 && (r.body?.failing ?? []).includes('postgres'), 8000),
      timed(() => c.getExecutionDetails.query({ executionId }), 10_000),
      timed(() => c.create.mutate({ flowId: flow.id }), 10_000),
      // a query after the pool's stale connections are gone: waits for a connection, then?
      delay(500).then(() => timed(() => c.getExecutionDetails.query({ executionId }), 10_000)),
    ]);
    t.diagnostic(`api /ready while postgres down: ${ready.answers.map(fmtReady).join(' ; ')}`);
    if (!ready.hit) problems.push(`api /ready did not answer 503 naming postgres within 8 s: ${ready.answers.map(fmtReady).join(' ; ')}`);
    else if ((ready.hit.body.failing ?? []).includes('kafka')) problems.push(`api /ready also names kafka: ${fmtReady(ready.hit)}`);
    for (const [what, r] of [['getExecutionDetails', details], ['create', created], ['getExecutionDetails (0.5 s later)', details2]]) {
      t.diagnostic(`${what} while postgres down: ${r.ok ? 'ok' : describe(r.error)} after ${r.ms} ms`);
      if (r.ok) problems.push(`${what} succeeded while postgres was down`);
      else if (r.hung) problems.push(`${what} hung (no answer within ${r.ms} ms) while postgres was down`);
      else if (codeOf(r.error) !== 'SERVICE_UNAVAILABLE') problems.push(`${what} failed with ${describe(r.error)}, want SERVICE_UNAVAILABLE`);
      else if (r.ms > 8000) problems.push(`${what} answered SERVICE_UNAVAILABLE only after ${r.ms} ms`);
    }
    const left = PG_DOWN_MS - (Date.now() - downAt);
    if (left > 0) await delay(left);
  } finally {
    t.diagnostic(`postgres down for ${Date.now() - downAt} ms; starting it again`);
    await serviceUp('postgres');
  }
  const upAt = Date.now();

  // every run ends once, with a consistent stream, and its row is completed
  const ends = await Promise.all(
    runs.map(({ rec }) => withTimeout(rec.done, 10_000, 'the run to end').catch((e) => `timeout: ${e.message}`)),
  );
  const afterwards = await Promise.all(
    runs.map(async ({ executionId: id }, i) => ({
      stored: ends[i] === 'complete' ? null : await storedSummary(id),
      row: await timed(() => c.getExecutionDetails.query({ executionId: id }), 8000),
    })),
  );
  for (const [i, { executionId: id, rec }] of runs.entries()) {
    const name = `run ${i + 1} (${id})`;
    const { stored, row } = afterwards[i];
    t.diagnostic(`${name}: ${ends[i]} ${Date.now() - upAt} ms after postgres was back: ${types(rec)}`);
    if (ends[i] !== 'complete') {
      problems.push(`${name}'s subscription: ${ends[i] === 'error' ? `error ${describe(rec.error)}` : ends[i]} (events: ${types(rec)})`);
      problems.push(`  ... while the server has: ${stored}`);
    }
    problems.push(...streamProblems(rec).map((p) => `${name}: ${p}`));
    if (!row.ok) problems.push(`getExecutionDetails of ${name} after postgres came back: ${describe(row.error)} after ${row.ms} ms`);
    else if (row.value.status !== 'completed') problems.push(`${name}'s row is '${row.value.status}' (${row.value.errorMessage ?? ''}), want 'completed'`);
  }

  const ready = await pollReady(gws.api, (r) => r.status === 200, 15_000);
  if (!ready.hit) problems.push(`api /ready not 200 within 15 s after postgres came back: ${ready.answers.slice(-3).map(fmtReady).join(' ; ')}`);
  else {
    t.diagnostic(`api /ready 200 ${Date.now() - upAt} ms after postgres was back`);
    const bad = ready.answers.filter((r) => r.status !== 200);
    if (bad.length) t.diagnostic(`  /ready answers before that: ${bad.map(fmtReady).join(' ; ')}`);
  }

  // new executions work, first try
  const fresh = await (async () => runToEnd((await c.flows.create.mutate({ flow: QUICK })).id, 20_000))().catch((e) => ({ failed: e }));
  if (fresh.failed) problems.push(`new execution after postgres came back: ${describe(fresh.failed)}`);
  else {
    t.diagnostic(`new execution: ${fresh.end} (${fresh.timing}): ${types(fresh.rec)}`);
    if (fresh.end !== 'complete') problems.push(`new execution after postgres came back: ${fresh.end}; events ${types(fresh.rec)}`);
    problems.push(...streamProblems(fresh.rec).map((p) => `new execution: ${p}`));
  }

  assert.deepEqual(problems, [], `postgres restart:\n  ${problems.join('\n  ')}\n gateway logs:\n${logs()}`);
});

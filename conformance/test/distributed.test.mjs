// Distributed mode on the real PostgreSQL + Kafka: 2 gateways (role api) + 2 workers (role worker).
// An execution created through gateway 1 is followed through gateway 2 with the official client
// (ChainGraph-style superjson); controls go through either gateway; a worker killed with SIGKILL
// mid-run is replaced by the other one and the stream stays consistent.
//
// Needs DATABASE_URL and KAFKA_BROKERS (`make test` starts both); skipped without them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { makeChainGraphClient, TERMINAL_TYPES, watchExecution } from '../lib/chaingraph-client.mjs';
import { delay, startGateway } from '../lib/gateway.mjs';
import { deleteTopics } from '../lib/kafka-cleanup.mjs';

const { DATABASE_URL, KAFKA_BROKERS } = process.env;
const skip = !DATABASE_URL || !KAFKA_BROKERS ? 'DATABASE_URL and KAFKA_BROKERS are not set' : false;

const SLOW = {
  name: 'slow chain',
  nodes: [
    { id: 's1', type: 'SleepNode', values: { duration: 400 } },
    { id: 's2', type: 'SleepNode', values: { duration: 400 } },
    { id: 's3', type: 'SleepNode', values: { duration: 400 } },
    { id: 's4', type: 'SleepNode', values: { duration: 400 } },
  ],
  edges: [
    { from: 's1.__success', to: 's2.__execute' },
    { from: 's2.__success', to: 's3.__execute' },
    { from: 's3.__success', to: 's4.__execute' },
  ],
};
const HELLO = {
  name: 'hello',
  nodes: [
    { id: 'name', type: 'TextNode', values: { text: 'Ada' } },
    { id: 'greet', type: 'HandlebarsTemplateNode', values: { template: 'Hello, {{name}}!', variables: { name: '' } } },
  ],
  edges: [{ from: 'name.text', to: 'greet.variables.name' }],
};

const gws = {};
const clients = [];

function env(role) {
  return {
    EXECUTION_MODE: 'distributed',
    CHAINGRAPH_ROLE: role,
    DATABASE_URL,
    KAFKA_BROKERS,
    KAFKA_TOPICS_PREFIX: prefix,
    CHAINGRAPH_LEASE_SECONDS: '2',
    CHAINGRAPH_RECOVERY_SWEEP_SECONDS: '0.5',
    CHAINGRAPH_WORKER_CONCURRENCY: '4',
  };
}
const prefix = `conf-${crypto.randomBytes(4).toString('hex')}.`;

function client(gw) {
  const c = makeChainGraphClient({ url: gw.url });
  clients.push(c);
  return c.client;
}

function assertContiguous(events) {
  const idx = events.map((e) => e.index);
  assert.deepEqual(idx, [...idx.keys()], `indexes must be 0..n-1 without gaps or repeats: ${idx.join(',')}`);
  const terminal = events.filter((e) => TERMINAL_TYPES.has(e.type));
  assert.equal(terminal.length, 1, 'exactly one terminal event');
  assert.equal(events.at(-1), terminal[0], 'the terminal event is last');
}

before(async () => {
  if (skip) return;
  // Workers first (they create the topics), then the gateways.
  gws.w1 = await startGateway({ env: env('worker'), startTimeoutMs: 40_000 });
  gws.w2 = await startGateway({ env: env('worker'), startTimeoutMs: 40_000 });
  gws.a1 = await startGateway({ env: env('api'), startTimeoutMs: 40_000 });
  gws.a2 = await startGateway({ env: env('api'), startTimeoutMs: 40_000 });
});

after(async () => {
  for (const c of clients) await c.close().catch(() => null);
  for (const gw of Object.values(gws)) await gw.stop('SIGKILL').catch(() => null);
  if (!skip) deleteTopics(KAFKA_BROKERS, prefix);
});

test('created through gateway 1, followed through gateway 2, runs on a worker', { skip }, async () => {
  const c1 = client(gws.a1);
  const c2 = client(gws.a2);
  const flow = await c1.flows.create.mutate({ flow: HELLO });
  const { executionId } = await c1.create.mutate({ flowId: flow.id });
  const watch = watchExecution(c2, { executionId, fromIndex: 0, eventTypes: [] });
  await watch.startedP;
  await c1.start.mutate({ executionId });
  await watch.waitFor((e) => TERMINAL_TYPES.has(e.type), { timeoutMs: 15_000, what: 'terminal event' });
  watch.unsubscribe();
  assertContiguous(watch.events);
  assert.equal(watch.events.at(-1).type, 'flow:completed');
  const greet = watch.events.find((e) => e.type === 'node:completed' && e.data.node.id === 'greet');
  assert.equal(greet.data.node.value('renderedText'), 'Hello, Ada!');
  const row = await c2.getExecutionDetails.query({ executionId });
  assert.equal(row.status, 'completed');
  assert.match(row.processingWorkerId ?? 'released', /released|^w\d+-/);
});

test('pause, resume and stop through either gateway reach the owning worker', { skip }, async () => {
  const c1 = client(gws.a1);
  const c2 = client(gws.a2);
  const flow = await c1.flows.create.mutate({ flow: SLOW });
  const { executionId } = await c1.create.mutate({ flowId: flow.id });
  const watch = watchExecution(c1, { executionId, fromIndex: 0, eventTypes: [] });
  await watch.startedP;
  await c2.start.mutate({ executionId });
  await watch.waitFor((e) => e.type === 'node:started', { timeoutMs: 10_000, what: 'first node' });
  const t0 = Date.now();
  await c2.pause.mutate({ executionId });
  await watch.waitFor((e) => e.type === 'flow:paused', { timeoutMs: 2000, what: 'flow:paused' });
  assert.ok(Date.now() - t0 < 1000, `pause took ${Date.now() - t0} ms`);
  const startedWhilePaused = watch.events.filter((e) => e.type === 'node:started').length;
  await delay(700);
  assert.equal(watch.events.filter((e) => e.type === 'node:started').length, startedWhilePaused,
    'no node starts while paused');
  await c1.resume.mutate({ executionId });
  await watch.waitFor((e) => e.type === 'flow:resumed', { timeoutMs: 2000, what: 'flow:resumed' });
  const t1 = Date.now();
  await c1.stop.mutate({ executionId, reason: 'enough' });
  await watch.waitFor((e) => e.type === 'flow:cancelled', { timeoutMs: 2000, what: 'flow:cancelled' });
  assert.ok(Date.now() - t1 < 1000, `stop took ${Date.now() - t1} ms`);
  watch.unsubscribe();
  assertContiguous(watch.events);
  const row = await c2.getExecutionDetails.query({ executionId });
  assert.equal(row.status, 'stopped');
});

test('a worker killed with SIGKILL mid-run: another takes over, one consistent stream', { skip }, async () => {
  const c1 = client(gws.a1);
  const c2 = client(gws.a2);
  const flow = await c1.flows.create.mutate({ flow: SLOW });
  const { executionId } = await c1.create.mutate({ flowId: flow.id });
  const watch = watchExecution(c2, { executionId, fromIndex: 0, eventTypes: [] });
  await watch.startedP;
  await c1.start.mutate({ executionId });
  await watch.waitFor((e) => e.type === 'node:completed', { timeoutMs: 10_000, what: 'a completed node' });
  // Kill the worker that owns the run (its id is on the row while it holds the lease).
  const row = await c1.getExecutionDetails.query({ executionId });
  assert.match(row.processingWorkerId, /^w\d+-/);
  let owner = null;
  for (const name of ['w1', 'w2']) {
    const health = await fetch(`${gws[name].httpUrl}/health`).then((r) => r.json()).catch(() => ({}));
    if (health.workerId === row.processingWorkerId) owner = name;
  }
  assert.ok(owner, `one of the workers owns ${row.processingWorkerId}`);
  const victim = owner;
  await gws[victim].kill9();
  await watch.waitFor((e) => TERMINAL_TYPES.has(e.type), { timeoutMs: 30_000, what: 'terminal event' });
  watch.unsubscribe();
  assertContiguous(watch.events);
  assert.ok(watch.events.some((e) => e.type === 'execution:restarted'), 'the takeover is announced');
  assert.equal(watch.events.at(-1).type, 'flow:completed');
  const final = await c2.getExecutionDetails.query({ executionId });
  assert.equal(final.status, 'completed');
  assert.equal(final.failureCount, 1);
});

// ChainGraph's execution API driven by a ChainGraph-style client (lib/chaingraph-client.mjs):
// ExecutionEventImpl / BaseNode custom superjson values, the subscription lifecycle the
// frontend relies on (started → start → events → terminal, stream stays open), replay and
// filtering, the debugger controls, breakpoints and child executions.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayFixture, sleep, until, withTimeout } from '../lib/gateway.mjs';
import { assertClientError, rejection } from '../lib/expect.mjs';
import {
  EVENT_TYPES,
  ExecutionEvent,
  SerializedNode,
  TERMINAL_TYPES,
  makeChainGraphClient,
  watchExecution,
} from '../lib/chaingraph-client.mjs';

let c;
gatewayFixture({
  setup: (gw) => {
    c = makeChainGraphClient({ url: gw.url });
  },
  teardown: () => c?.close(),
});

// examples/flows/hello.yaml, inline
const HELLO = {
  name: 'Hello',
  description: 'Render a greeting from a name and log it',
  nodes: [
    { id: 'name', type: 'TextNode', values: { text: 'Ada' } },
    {
      id: 'greeting',
      type: 'HandlebarsTemplateNode',
      values: { template: 'Hello, {{name}}! You are {{age}}.', variables: { name: '', age: 36 } },
    },
    { id: 'log', type: 'DebugLogNode' },
  ],
  edges: [
    { from: 'name.text', to: 'greeting.variables.name' },
    { from: 'greeting.renderedText', to: 'log.message' },
  ],
};

// examples/flows/events.yaml, inline
const EVENTS = {
  name: 'Event emitter and listener',
  nodes: [
    { id: 'emit', type: 'EventEmitterNode', values: { eventName: 'order', payload: { item: 'tea', quantity: 2 } } },
    { id: 'listen', type: 'EventListenerNode', values: { eventName: 'order', outputData: { item: '', quantity: 0 } } },
    {
      id: 'describe',
      type: 'HandlebarsTemplateNode',
      values: { template: '{{quantity}} x {{item}}', variables: { item: '', quantity: 0 } },
    },
    { id: 'log', type: 'DebugLogNode' },
  ],
  edges: [
    { from: 'listen.outputData.item', to: 'describe.variables.item' },
    { from: 'listen.outputData.quantity', to: 'describe.variables.quantity' },
    { from: 'describe.renderedText', to: 'log.message' },
  ],
};

/** n SleepNodes of `ms` chained by __success → __execute (examples/flows/slow-steps.yaml, faster). */
function sleeps(n = 3, ms = 300) {
  const ids = Array.from({ length: n }, (_, i) => `s${i + 1}`);
  return {
    name: `Sleeps ${n}x${ms}`,
    nodes: ids.map((id) => ({ id, type: 'SleepNode', values: { duration: ms } })),
    edges: ids.slice(1).map((id, i) => ({ from: `${ids[i]}.__success`, to: `${id}.__execute` })),
  };
}

// What the frontend sends (spec §9).
const FRONTEND_OPTIONS = { maxConcurrency: 10, nodeTimeoutMs: 300000, flowTimeoutMs: 900000 };
const ALL_BUT_STATUS = EVENT_TYPES.filter((t) => t !== 'node:status-changed');

const flows = {};
async function flowId(key, doc) {
  if (!flows[key]) flows[key] = (await c.client.flows.create.mutate({ flow: doc })).id;
  return flows[key];
}

/** create → subscribe (fromIndex 0) → on started: start → wait for the terminal event. */
async function runToEnd(fid, { input = {}, createOptions, start = true, timeoutMs = 10_000 } = {}) {
  const { executionId } = await c.client.create.mutate({ flowId: fid, ...(createOptions ?? {}) });
  const w = watchExecution(c.client, { executionId, fromIndex: 0, eventTypes: [], ...input });
  await withTimeout(w.startedP, 5000, 'subscription started');
  if (start) await c.client.start.mutate({ executionId });
  if (timeoutMs) await w.waitTerminal({ timeoutMs });
  return { executionId, w };
}

const brief = (events) => events.map((e) => `${e.index}:${e.type}`).join(' ');

function nodeEvent(events, type, nodeId) {
  return events.find((e) => e.type === type && e.data?.node?.id === nodeId);
}

/** Sent/received frames of the ChainGraph client, flattened and parsed. */
function sentMessages() {
  return c.sent
    .filter((s) => typeof s === 'string' && s !== 'PING' && s !== 'PONG')
    .flatMap((s) => {
      const m = JSON.parse(s);
      return Array.isArray(m) ? m : [m];
    });
}
function receivedMessages() {
  return c.received
    .filter((s) => typeof s === 'string' && s !== 'PING' && s !== 'PONG')
    .map((s) => JSON.parse(s));
}
function subscriptionIdFor(executionId) {
  const subs = sentMessages().filter(
    (m) =>
      m.method === 'subscription' &&
      m.params?.path === 'subscribeToExecutionEvents' &&
      m.params?.input?.json?.executionId === executionId,
  );
  assert.ok(subs.length > 0, `no subscription frame sent for ${executionId}`);
  return subs.at(-1).id;
}

function assertContiguous(events, from = 0, what = 'events') {
  events.forEach((e, i) =>
    assert.equal(e.index, from + i, `${what}: index ${from + i} expected at position ${i}; got ${brief(events)}`),
  );
}

let hello; // {executionId, w} of the first hello run, reused by later tests

test('hello flow: ExecutionEvent objects, contiguous indexes, node snapshots, terminal last', async () => {
  const fid = await flowId('hello', HELLO);
  hello = await runToEnd(fid);
  const { w, executionId } = hello;
  assert.equal(w.error, null, `subscription error: ${w.error?.message}`);
  assert.equal(w.started, 1, 'onStarted once');

  // batches: non-empty arrays of ExecutionEvent instances
  assert.ok(w.batches.length >= 1);
  for (const b of w.batches) {
    assert.ok(Array.isArray(b), `each data is an array, got ${typeof b}`);
    assert.ok(b.length > 0, 'no empty batches');
  }
  const events = w.events;
  for (const e of events) {
    assert.ok(e instanceof ExecutionEvent, `event ${e?.index} is an ExecutionEvent instance`);
    assert.ok(e.timestamp instanceof Date, `event ${e.index} timestamp is a Date`);
    assert.ok(!Number.isNaN(e.timestamp.getTime()), `event ${e.index} timestamp valid`);
    assert.equal(typeof e.type, 'string');
  }
  assertContiguous(events, 0);
  for (let i = 1; i < events.length; i++) {
    assert.ok(events[i].timestamp >= events[i - 1].timestamp, `timestamps non-decreasing at ${i}`);
  }

  assert.equal(events[0].type, 'execution:created', brief(events));
  assert.equal(events[0].data.executionId, executionId);
  assert.equal(events[0].data.flowId, fid);
  assert.equal(events[1].type, 'flow:started', brief(events));
  assert.equal(events[1].data.flowMetadata.id, fid);
  assert.equal(events.at(-1).type, 'flow:completed', brief(events));
  assert.equal(events.filter((e) => TERMINAL_TYPES.has(e.type)).length, 1, 'exactly one terminal event');
  assert.equal(typeof events.at(-1).data.executionTime, 'number');

  // node snapshots are rebuilt through the BaseNode transformer
  const nodeEvents = events.filter((e) => ['node:started', 'node:completed', 'node:failed'].includes(e.type));
  assert.ok(nodeEvents.length >= 6, `started+completed for 3 nodes: ${brief(events)}`);
  for (const e of nodeEvents) {
    assert.ok(e.data.node instanceof SerializedNode, `${e.type} #${e.index}: data.node is a BaseNode value`);
  }
  for (const id of ['name', 'greeting', 'log']) {
    const started = nodeEvent(events, 'node:started', id);
    const completed = nodeEvent(events, 'node:completed', id);
    assert.ok(started, `node:started ${id}`);
    assert.ok(completed, `node:completed ${id}`);
    assert.ok(started.index < completed.index, `${id}: started before completed`);
    assert.equal(typeof completed.data.executionTime, 'number');
  }
  const greeting = nodeEvent(events, 'node:completed', 'greeting').data.node;
  assert.equal(greeting.type, 'HandlebarsTemplateNode');
  assert.equal(greeting.value('renderedText'), 'Hello, Ada! You are 36.');
  assert.equal(greeting.value('template'), 'Hello, {{name}}! You are {{age}}.');
  assert.equal(nodeEvent(events, 'node:completed', 'name').data.node.value('text'), 'Ada');
  // dependencies: the template starts after the text node completed
  assert.ok(
    nodeEvent(events, 'node:completed', 'name').index < nodeEvent(events, 'node:started', 'greeting').index,
  );
  const logLine = events.find((e) => e.type === 'node:debug-log-string');
  assert.ok(logLine, `a node:debug-log-string event: ${brief(events)}`);
  assert.deepStrictEqual(logLine.data, { nodeId: 'log', log: 'Hello, Ada! You are 36.' });
  const transfers = events.filter((e) => e.type === 'edge:transfer-completed');
  assert.equal(transfers.length, 2, 'two edge transfers');
  for (const t of transfers) {
    assert.equal(typeof t.data.serializedEdge.sourceNodeId, 'string');
    assert.equal(typeof t.data.serializedEdge.targetNodeId, 'string');
  }
});

test('hello flow: the wire form is ExecutionEventImpl with nested {json, meta} data and BaseNode', () => {
  const subId = subscriptionIdFor(hello.executionId);
  const data = receivedMessages().filter((m) => m.id === subId && m.result?.type === 'data');
  assert.ok(data.length > 0);
  const first = receivedMessages().find((m) => m.id === subId);
  assert.deepStrictEqual(first, { id: subId, result: { type: 'started' } }, 'started comes first');
  for (const m of data) {
    assert.equal(m.result.id, undefined, 'no tracked envelope on subscribeToExecutionEvents');
    const payload = m.result.data;
    assert.ok(Array.isArray(payload.json), 'json is the array of events');
    payload.json.forEach((ev, i) => {
      assert.deepStrictEqual(payload.meta.values[String(i)], [['custom', 'ExecutionEventImpl']]);
      assert.deepStrictEqual(Object.keys(ev).sort(), ['data', 'index', 'timestamp', 'type']);
      assert.match(ev.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(ev.data && typeof ev.data === 'object' && 'json' in ev.data, 'data is a nested superjson object');
      if (ev.data.json && typeof ev.data.json === 'object' && 'node' in ev.data.json) {
        assert.deepStrictEqual(ev.data.meta?.values?.node, [['custom', 'BaseNode']]);
        assert.equal(ev.data.json.node.schemaVersion, 'v2');
      }
    });
  }
});

test('hello flow: the stream stays open after the terminal event and stops cleanly on unsubscribe', async () => {
  const { w, executionId } = hello;
  const n = w.events.length;
  await sleep(500);
  assert.equal(w.completed, 0, 'no onComplete after flow:completed (the stream never ends by itself)');
  assert.equal(w.stopped, 0, 'no stopped');
  assert.equal(w.error, null);
  assert.equal(w.events.length, n, 'nothing after the terminal event');
  const subId = subscriptionIdFor(executionId);
  w.unsubscribe();
  await until(
    () => receivedMessages().some((m) => m.id === subId && m.result?.type === 'stopped'),
    { timeoutMs: 2000, what: `stopped for subscription ${subId}` },
  );
  assert.ok(
    sentMessages().some((m) => m.id === subId && m.method === 'subscription.stop'),
    'client sent subscription.stop',
  );
  assert.equal(w.error, null);
  const details = await c.client.getExecutionDetails.query({ executionId });
  assert.equal(details.id, executionId, 'connection still usable');
});

test('getExecutionDetails of a completed execution: status and Date fields', async () => {
  const { executionId } = hello;
  const d = await c.client.getExecutionDetails.query({ executionId });
  assert.equal(d.id, executionId);
  assert.equal(d.flowId, flows.hello);
  assert.equal(d.status, 'completed');
  assert.equal(d.rootExecutionId, executionId);
  assert.equal(d.parentExecutionId, null);
  assert.equal(d.executionDepth, 0);
  assert.equal(d.errorMessage, null);
  for (const k of ['createdAt', 'updatedAt', 'startedAt', 'completedAt']) {
    assert.ok(d[k] instanceof Date, `${k} is a Date, got ${d[k]}`);
  }
  assert.ok(d.createdAt <= d.startedAt, 'createdAt <= startedAt');
  assert.ok(d.startedAt <= d.completedAt, 'startedAt <= completedAt');
  const last = hello.w.events.at(-1);
  assert.ok(Math.abs(d.completedAt - last.timestamp) < 5000, 'completedAt near the terminal event');
});

test('replay after completion: fromIndex 3 delivers exactly 3..last', async () => {
  const { executionId, w: first } = hello;
  const last = first.events.at(-1).index;
  const w = watchExecution(c.client, { executionId, fromIndex: 3, eventTypes: [] });
  await w.waitTerminal();
  await sleep(200);
  assert.equal(w.error, null);
  assertContiguous(w.events, 3, 'replay');
  assert.equal(w.events.at(-1).index, last);
  assert.deepStrictEqual(
    w.events.map((e) => [e.index, e.type, e.timestamp.getTime()]),
    first.events.slice(3).map((e) => [e.index, e.type, e.timestamp.getTime()]),
    'same events as the live run',
  );
  for (const b of w.batches) assert.ok(b.length > 0, 'no empty batches');
  w.unsubscribe();
});

test('eventTypes filter: only the requested types, never an empty array (live and replay)', async () => {
  const fid = await flowId('hello', HELLO);
  const { executionId } = await c.client.create.mutate({ flowId: fid });
  const all = watchExecution(c.client, { executionId, fromIndex: 0, eventTypes: [] });
  const few = ['node:completed', 'flow:completed'];
  const filtered = watchExecution(c.client, { executionId, fromIndex: 0, eventTypes: few });
  const frontend = watchExecution(c.client, { executionId, fromIndex: 0, eventTypes: ALL_BUT_STATUS });
  await withTimeout(Promise.all([all.startedP, filtered.startedP, frontend.startedP]), 5000, 'started');
  await c.client.start.mutate({ executionId });
  await Promise.all([all.waitTerminal(), filtered.waitTerminal(), frontend.waitTerminal()]);
  await sleep(200);

  for (const [name, w, types] of [
    ['filtered', filtered, few],
    ['frontend', frontend, ALL_BUT_STATUS],
  ]) {
    assert.equal(w.error, null, `${name}: ${w.error?.message}`);
    for (const b of w.batches) assert.ok(b.length > 0, `${name}: an empty array was delivered`);
    for (const e of w.events) assert.ok(types.includes(e.type), `${name}: unexpected ${e.type}`);
    const expected = all.events.filter((e) => types.includes(e.type));
    assert.deepStrictEqual(
      w.events.map((e) => e.index),
      expected.map((e) => e.index),
      `${name}: the same events as the unfiltered stream, in order`,
    );
    const idx = w.events.map((e) => e.index);
    for (let i = 1; i < idx.length; i++) assert.ok(idx[i] > idx[i - 1], `${name}: indexes increase`);
  }
  assert.equal(filtered.events.filter((e) => e.type === 'node:completed').length, 3);
  assert.ok(!frontend.events.some((e) => e.type === 'node:status-changed'));
  assert.ok(all.events.some((e) => e.type === 'node:status-changed'), 'unfiltered has status changes');

  // replay with a filter
  const replay = watchExecution(c.client, { executionId, fromIndex: 0, eventTypes: ['flow:started'] });
  await replay.waitType('flow:started');
  await sleep(200);
  assert.deepStrictEqual(replay.types(), ['flow:started']);
  for (const b of replay.batches) assert.ok(b.length > 0);
  for (const w of [all, filtered, frontend, replay]) w.unsubscribe();
});

test('getRootExecutions({flowId, limit: 100}) lists root runs with levels and totalNested', async () => {
  const fid = await flowId('hello', HELLO);
  const rows = await c.client.getRootExecutions.query({ flowId: fid, limit: 100 });
  assert.ok(Array.isArray(rows));
  assert.ok(rows.length >= 2, `two hello runs so far, got ${rows.length}`);
  for (const r of rows) {
    assert.deepStrictEqual(Object.keys(r).sort(), ['execution', 'levels', 'totalNested']);
    assert.equal(r.execution.flowId, fid);
    assert.equal(r.execution.executionDepth, 0);
    assert.ok(r.execution.createdAt instanceof Date);
    assert.equal(r.levels, 0);
    assert.equal(r.totalNested, 1);
  }
  const created = rows.map((r) => r.execution.createdAt.getTime());
  for (let i = 1; i < created.length; i++) assert.ok(created[i] <= created[i - 1], 'newest first');
  assert.ok(rows.some((r) => r.execution.id === hello.executionId));
});

test('getRootExecutions({flowId, limit: 100, after: undefined}) — the frontend form', async () => {
  const fid = await flowId('hello', HELLO);
  // superjson sends {"after":null} with meta {"after":["undefined"]}: the key must count as absent.
  const rows = await c.client.getRootExecutions.query({ flowId: fid, limit: 100, after: undefined });
  assert.ok(Array.isArray(rows));
  assert.ok(rows.some((r) => r.execution.id === hello.executionId));
  for (const r of rows) assert.deepStrictEqual(Object.keys(r).sort(), ['execution', 'levels', 'totalNested']);
  // and a real Date cursor
  const older = await c.client.getRootExecutions.query({ flowId: fid, limit: 100, after: new Date(0) });
  assert.deepStrictEqual(older, [], 'nothing created before 1970');
});

test('create: optional inputs sent as undefined count as absent (superjson ["undefined"])', async () => {
  const fid = await flowId('hello', HELLO);
  // what the frontend sends (spec §9), with the optional keys that are often undefined
  const a = await c.client.create.mutate({
    flowId: fid,
    options: { debug: false, breakpoints: [], execution: FRONTEND_OPTIONS },
    integration: { archai: undefined, wallet: undefined },
  });
  assert.match(a.executionId, /^EX/);
  const failures = [];
  for (const input of [
    { flowId: fid, options: { debug: undefined, breakpoints: undefined } },
    { flowId: fid, options: undefined, integration: undefined, events: undefined },
    { flowId: fid, options: { execution: { maxConcurrency: undefined, nodeTimeoutMs: 1000 } } },
  ]) {
    try {
      const { executionId } = await c.client.create.mutate(input);
      assert.equal((await c.client.getExecutionDetails.query({ executionId })).status, 'created');
    } catch (err) {
      const meta = JSON.stringify(c.superjson.serialize(input).meta);
      failures.push(`${meta} → ${err.data?.code}: ${err.message.replace(/\s+/g, ' ')}`);
    }
  }
  assert.deepStrictEqual(failures, [], 'create rejected inputs with undefined optional fields');
});

test('controls: pause → flow:paused and no node starts; step runs exactly one node; resume continues', async () => {
  const fid = await flowId('sleeps', sleeps(3, 300));
  const { executionId, w } = await runToEnd(fid, { timeoutMs: 0 });
  const started = () => w.events.filter((e) => e.type === 'node:started');
  await w.waitFor((e) => e.type === 'node:started' && e.data.node.id === 's1', { what: 'node:started s1' });
  assert.deepStrictEqual(await c.client.pause.mutate({ executionId }), { success: true });
  const paused = await w.waitType('flow:paused', { timeoutMs: 2000 });
  assert.equal(paused.data.reason, 'User requested pause');
  assert.equal((await c.client.getExecutionDetails.query({ executionId })).status, 'paused');
  // s1 was already running: it may finish, but nothing new starts
  await sleep(500);
  assert.deepStrictEqual(
    started().map((e) => e.data.node.id),
    ['s1'],
    `no node started while paused: ${brief(w.events)}`,
  );
  assert.ok(nodeEvent(w.events, 'node:completed', 's1'), 's1 (already running) finished');
  assert.ok(!w.events.some((e) => TERMINAL_TYPES.has(e.type)));

  // step: exactly one node
  assert.deepStrictEqual(await c.client.step.mutate({ executionId }), { success: true });
  await w.waitFor((e) => e.type === 'node:completed' && e.data.node.id === 's2', { what: 's2 completed' });
  await sleep(400);
  assert.deepStrictEqual(
    started().map((e) => e.data.node.id),
    ['s1', 's2'],
    `step started exactly one node: ${brief(w.events)}`,
  );
  assert.equal((await c.client.getExecutionDetails.query({ executionId })).status, 'paused', 'still paused');

  // resume
  assert.deepStrictEqual(await c.client.resume.mutate({ executionId }), { success: true });
  const resumed = await w.waitType('flow:resumed', { timeoutMs: 2000 });
  const end = await w.waitTerminal({ timeoutMs: 5000 });
  assert.equal(end.type, 'flow:completed', brief(w.events));
  assert.ok(resumed.index < nodeEvent(w.events, 'node:started', 's3').index, 's3 starts after flow:resumed');
  assert.equal(w.events.at(-1), end, 'terminal event last');
  assertContiguous(w.events, 0);
  assert.equal((await c.client.getExecutionDetails.query({ executionId })).status, 'completed');
  w.unsubscribe();
});

test('controls: stop → flow:cancelled within 1 s, status stopped; further controls are rejected', async () => {
  const fid = await flowId('sleeps', sleeps(3, 300));
  const { executionId, w } = await runToEnd(fid, { timeoutMs: 0 });
  await w.waitType('node:started');
  const t0 = Date.now();
  assert.deepStrictEqual(await c.client.stop.mutate({ executionId }), { success: true });
  const end = await w.waitTerminal({ timeoutMs: 1000 });
  const took = Date.now() - t0;
  assert.equal(end.type, 'flow:cancelled', brief(w.events));
  assert.ok(took <= 1000, `flow:cancelled after ${took} ms`);
  assert.equal(end.data.reason, 'User requested stop');
  assert.equal((await c.client.getExecutionDetails.query({ executionId })).status, 'stopped');
  await sleep(400);
  assert.equal(w.events.at(-1), end, `nothing after flow:cancelled: ${brief(w.events)}`);
  assert.ok(!nodeEvent(w.events, 'node:completed', 's1'), 'the running sleep was cancelled');
  const d = await c.client.getExecutionDetails.query({ executionId });
  assert.ok(d.completedAt instanceof Date);
  for (const [proc, msg] of [
    ['stop', 'Cannot stop execution in status stopped'],
    ['pause', 'Cannot pause execution in status stopped'],
    ['resume', 'Cannot resume execution in status stopped'],
    ['start', "Cannot start execution in status stopped. Execution must be in 'created' status."],
  ]) {
    assertClientError(await rejection(c.client[proc].mutate({ executionId })), {
      code: 'BAD_REQUEST',
      message: msg,
      path: proc,
    });
  }
  w.unsubscribe();
});

test('controls: stop of a created (never started) execution ends it with flow:cancelled', async () => {
  const fid = await flowId('sleeps', sleeps(3, 300));
  const { executionId, w } = await runToEnd(fid, { start: false, timeoutMs: 0 });
  await w.waitType('execution:created');
  await c.client.stop.mutate({ executionId, reason: 'not needed' });
  const end = await w.waitTerminal({ timeoutMs: 2000 });
  assert.equal(end.type, 'flow:cancelled');
  assert.equal(end.data.reason, 'not needed');
  assert.deepStrictEqual(w.types(), ['execution:created', 'flow:cancelled']);
  assert.equal((await c.client.getExecutionDetails.query({ executionId })).status, 'stopped');
  w.unsubscribe();
});

test('controls: start twice, pause/resume in the wrong state → BAD_REQUEST', async () => {
  const fid = await flowId('sleeps', sleeps(3, 300));
  const { executionId } = await c.client.create.mutate({ flowId: fid });
  assertClientError(await rejection(c.client.pause.mutate({ executionId })), {
    code: 'BAD_REQUEST',
    message: 'Cannot pause execution in status created',
    path: 'pause',
  });
  assertClientError(await rejection(c.client.resume.mutate({ executionId })), {
    code: 'BAD_REQUEST',
    message: 'Cannot resume execution in status created',
    path: 'resume',
  });
  await c.client.start.mutate({ executionId });
  assertClientError(await rejection(c.client.start.mutate({ executionId })), {
    code: 'BAD_REQUEST',
    message: "Cannot start execution in status running. Execution must be in 'created' status.",
    path: 'start',
  });
  assertClientError(await rejection(c.client.resume.mutate({ executionId })), {
    code: 'BAD_REQUEST',
    message: 'Cannot resume execution in status running',
    path: 'resume',
  });
  await c.client.stop.mutate({ executionId });

  // a completed execution
  const done = hello.executionId;
  assertClientError(await rejection(c.client.pause.mutate({ executionId: done })), {
    code: 'BAD_REQUEST',
    message: 'Cannot pause execution in status completed',
    path: 'pause',
  });
  assertClientError(await rejection(c.client.stop.mutate({ executionId: done })), {
    code: 'BAD_REQUEST',
    message: 'Cannot stop execution in status completed',
    path: 'stop',
  });

  // unknown ids
  const missing = 'EXnope';
  assertClientError(await rejection(c.client.getExecutionDetails.query({ executionId: missing })), {
    code: 'NOT_FOUND',
    path: 'getExecutionDetails',
  });
  assertClientError(await rejection(c.client.start.mutate({ executionId: missing })), {
    code: 'NOT_FOUND',
    message: `Execution with id ${missing} not found, create it first`,
    path: 'start',
  });
  assertClientError(await rejection(c.client.create.mutate({ flowId: 'V2nope' })), {
    code: 'NOT_FOUND',
    message: 'Flow with id V2nope not found',
    path: 'create',
  });
});

test('breakpoints: debug:breakpoint-hit at the node, then resume completes the run', async () => {
  const fid = await flowId('sleeps', sleeps(3, 300));
  const { executionId, w } = await runToEnd(fid, {
    timeoutMs: 0,
    input: { eventTypes: ALL_BUT_STATUS },
    createOptions: { options: { debug: true, breakpoints: ['s2'], execution: FRONTEND_OPTIONS }, integration: {} },
  });
  try {
    const hit = await w.waitType('debug:breakpoint-hit', { timeoutMs: 3000 });
    assert.ok(hit.data.node instanceof SerializedNode, 'data.node is a BaseNode value');
    assert.equal(hit.data.node.id, 's2');
    assert.ok(nodeEvent(w.events, 'node:completed', 's1').index < hit.index, 's1 ran before the breakpoint');
    await sleep(400);
    assert.ok(!nodeEvent(w.events, 'node:started', 's2'), `s2 held at its breakpoint: ${brief(w.events)}`);
    const status = (await c.client.getExecutionDetails.query({ executionId })).status;
    // The frontend shows "Paused" on debug:breakpoint-hit and offers resume (spec §9).
    const err = await c.client.resume.mutate({ executionId }).then(
      () => null,
      (e) => e,
    );
    assert.ok(
      err === null,
      `resume after debug:breakpoint-hit failed: ${err?.data?.code} "${err?.message}" (row status was '${status}')`,
    );
    const end = await w.waitTerminal({ timeoutMs: 5000 });
    assert.equal(end.type, 'flow:completed', brief(w.events));
    assert.ok(nodeEvent(w.events, 'node:completed', 's2') && nodeEvent(w.events, 'node:completed', 's3'));
  } finally {
    w.unsubscribe();
    await c.client.stop.mutate({ executionId }).catch(() => null);
  }
});

let eventsRun;
test('child executions: an emitted event spawns a child; getExecutionsTree shows it at level 1', async () => {
  const fid = await flowId('events', EVENTS);
  eventsRun = await runToEnd(fid);
  const root = eventsRun.executionId;
  assert.equal(eventsRun.w.events.at(-1).type, 'flow:completed', brief(eventsRun.w.events));
  assert.ok(!eventsRun.w.events.some((e) => e.type.startsWith('child:')), 'no child:* events on the parent');
  let tree;
  await until(
    async () => {
      tree = await c.client.getExecutionsTree.query({ executionId: root });
      return tree.length >= 2 && tree.every((n) => ['completed', 'failed', 'stopped'].includes(n.execution.status));
    },
    { timeoutMs: 5000, what: 'child execution finished' },
  );
  assert.equal(tree.length, 2, JSON.stringify(tree.map((n) => [n.id, n.level])));
  const [top, child] = tree;
  assert.deepStrictEqual(Object.keys(top).sort(), ['execution', 'id', 'level', 'parentId']);
  assert.equal(top.id, root);
  assert.equal(top.parentId, null);
  assert.equal(top.level, 0);
  assert.equal(child.parentId, root);
  assert.equal(child.level, 1);
  const ce = child.execution;
  assert.equal(ce.id, child.id);
  assert.equal(ce.parentExecutionId, root);
  assert.equal(ce.rootExecutionId, root);
  assert.equal(ce.executionDepth, 1);
  assert.equal(ce.flowId, fid);
  assert.equal(ce.status, 'completed');
  assert.deepStrictEqual(ce.externalEvents, [{ eventName: 'order', payload: { item: 'tea', quantity: 2 } }]);
  assert.ok(ce.createdAt instanceof Date && ce.completedAt instanceof Date);

  // the child has its own stream: the listener branch ran with the event payload
  const cw = watchExecution(c.client, { executionId: child.id, fromIndex: 0, eventTypes: [] });
  await cw.waitTerminal();
  assert.equal(cw.events[0].type, 'execution:created');
  assert.equal(cw.events[0].data.parentExecutionId, root);
  assertContiguous(cw.events, 0, 'child events');
  assert.equal(cw.events.at(-1).type, 'flow:completed', brief(cw.events));
  assert.equal(nodeEvent(cw.events, 'node:completed', 'describe').data.node.value('renderedText'), '2 x tea');
  assert.ok(!nodeEvent(cw.events, 'node:started', 'emit'), 'the emitter does not run in the child');
  cw.unsubscribe();

  const roots = await c.client.getRootExecutions.query({ flowId: fid, limit: 100 });
  const mine = roots.find((r) => r.execution.id === root);
  assert.ok(mine, 'the root is listed');
  assert.ok(!roots.some((r) => r.execution.id === child.id), 'children are not roots');
  assert.equal(mine.levels, 1);
  assert.equal(mine.totalNested, 2);
  eventsRun.childId = child.id;
  eventsRun.w.unsubscribe();
});

test('child executions: the child row records when it started (startedAt)', async () => {
  assert.ok(eventsRun?.childId, 'needs the previous test');
  const d = await c.client.getExecutionDetails.query({ executionId: eventsRun.childId });
  assert.equal(d.status, 'completed');
  // spec §2: running sets startedAt; a completed run has startedAt <= completedAt
  assert.ok(d.startedAt instanceof Date, `child startedAt must be a Date, got ${d.startedAt}`);
  assert.ok(d.startedAt <= d.completedAt);
});

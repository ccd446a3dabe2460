// Our `executionEvents` subscription (plain superjson, each event tracked by String(index), the
// stream ends after the terminal event) across a hard crash: the official client reconnects to
// the gateway restarted on the same port and data dir and resumes with lastEventId. The run
// that was live when the process died ends with flow:failed ("the gateway restarted").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayFixture, makeClient, recordSubscription, until, withTimeout } from '../lib/gateway.mjs';

let gw;
let c;
gatewayFixture({
  setup: (g) => {
    gw = g;
  },
  teardown: () => c?.close(),
});

const SLOW = {
  name: 'Six sleeps',
  nodes: Array.from({ length: 6 }, (_, i) => ({ id: `s${i + 1}`, type: 'SleepNode', values: { duration: 300 } })),
  edges: Array.from({ length: 5 }, (_, i) => ({ from: `s${i + 1}.__success`, to: `s${i + 2}.__execute` })),
};

function sentMessages() {
  return c.sent
    .filter((s) => typeof s === 'string' && s !== 'PING' && s !== 'PONG')
    .flatMap((s) => {
      const m = JSON.parse(s);
      return Array.isArray(m) ? m : [m];
    });
}

let executionId;
let crashedAfter;

test('executionEvents resumes by lastEventId across kill -9 + restart; the run ends flow:failed', async () => {
  const opens = [];
  c = makeClient({ url: gw.url, onOpen: () => opens.push(Date.now()) });
  const flow = await c.client.flows.create.mutate({ flow: SLOW });
  ({ executionId } = await c.client.create.mutate({ flowId: flow.id }));

  const received = [];
  const starts = [];
  const mismatches = [];
  let error = null;
  let completed = 0;
  const done = new Promise((resolve) => {
    c.client.executionEvents.subscribe(
      { executionId },
      {
        onStarted: () => starts.push(received.length),
        onData: (d) => {
          if (d.id !== String(d.data.index)) mismatches.push(d);
          received.push(d);
        },
        onError: (e) => {
          error = e;
          resolve('error');
        },
        onComplete: () => {
          completed++;
          resolve('complete');
        },
      },
    );
  });
  await until(() => starts.length === 1, { timeoutMs: 5000, what: 'subscription started' });
  await c.client.start.mutate({ executionId });
  await until(() => received.some((d) => d.data.type === 'node:completed'), {
    timeoutMs: 5000,
    what: 'the first node to complete',
  });
  crashedAfter = received.length;
  const info = await gw.kill9();
  assert.equal(info.signal, 'SIGKILL');
  assert.ok(
    !received.some((d) => ['flow:completed', 'flow:failed', 'flow:cancelled'].includes(d.data.type)),
    'crashed mid-run',
  );

  await gw.restart();
  const end = await withTimeout(done, 25_000, `stream to end after restart (have ${received.length} events)`);
  assert.equal(end, 'complete', `subscription ended with ${end}: ${error?.message}`);
  assert.equal(completed, 1);

  const indexes = received.map((d) => d.data.index);
  assert.deepStrictEqual(
    indexes,
    Array.from({ length: indexes.length }, (_, i) => i),
    `contiguous from 0, no duplicates: ${indexes.join(',')}`,
  );
  assert.deepStrictEqual(mismatches, [], 'tracked id == String(index)');
  assert.ok(received.length > crashedAfter, 'events arrived after the restart');
  for (const d of received) {
    assert.ok(d.data.timestamp instanceof Date, `event ${d.id}: timestamp is a Date`);
    assert.equal(typeof d.data.type, 'string');
  }
  assert.equal(received[0].data.type, 'execution:created');
  assert.equal(received[1].data.type, 'flow:started');
  const last = received.at(-1).data;
  assert.equal(last.type, 'flow:failed', received.map((d) => d.data.type).join(' '));
  assert.ok(last.data.error instanceof Error, 'data.error is a superjson Error');
  assert.match(last.data.error.message, /gateway restarted/i);
  assert.equal(
    received.filter((d) => ['flow:completed', 'flow:failed', 'flow:cancelled'].includes(d.data.type)).length,
    1,
    'one terminal event',
  );

  assert.ok(opens.length >= 2, 'client reconnected');
  assert.ok(starts.length >= 2, 'subscription started again on the new connection');
  const resubscribed = sentMessages().filter(
    (m) => m.method === 'subscription' && m.params?.path === 'executionEvents' && m.params.lastEventId !== undefined,
  );
  assert.ok(resubscribed.length >= 1, 'the resubscription carried lastEventId');
  // events may still arrive between the kill and the socket's close: the resume point is the
  // last event delivered before the subscription started again
  const lastBefore = received[starts[1] - 1].id;
  assert.equal(resubscribed[0].params.lastEventId, lastBefore, 'lastEventId = the last id seen before the crash');

  const details = await c.client.getExecutionDetails.query({ executionId });
  assert.equal(details.status, 'failed');
  assert.match(details.errorMessage ?? '', /gateway restarted/i);
  assert.ok(details.completedAt instanceof Date);
});

test('executionEvents on a finished run: lastEventId / fromIndex replay the tail, then the stream ends', async () => {
  assert.ok(executionId, 'needs the previous test');
  const all = recordSubscription(c.client.executionEvents, { executionId });
  assert.equal(await withTimeout(all.done, 5000, 'full replay'), 'complete');
  const n = all.data.length;
  assert.ok(n > 5);
  assert.equal(all.data.at(-1).data.type, 'flow:failed');

  const tail = recordSubscription(c.client.executionEvents, { executionId, lastEventId: '2' });
  assert.equal(await withTimeout(tail.done, 5000, 'lastEventId replay'), 'complete');
  assert.deepStrictEqual(
    tail.data.map((d) => d.id),
    Array.from({ length: n - 3 }, (_, i) => String(i + 3)),
  );

  const from = recordSubscription(c.client.executionEvents, { executionId, fromIndex: 4 });
  assert.equal(await withTimeout(from.done, 5000, 'fromIndex replay'), 'complete');
  assert.deepStrictEqual(
    from.data.map((d) => d.data.index),
    Array.from({ length: n - 4 }, (_, i) => i + 4),
  );
});

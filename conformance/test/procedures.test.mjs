// system.info / system.echo / system.ticks through the official client, and the error
// shapes for wrong procedure type, unknown path and input validation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  beyondReference,
  gatewayFixture,
  makeClient,
  recordSubscription,
  sleep,
  withTimeout,
} from '../lib/gateway.mjs';
import { assertClientError, rejection } from '../lib/expect.mjs';

let c;
gatewayFixture({
  setup: (gw) => {
    c = makeClient({ url: gw.url });
  },
  teardown: () => c?.close(),
});

test('system.info query', beyondReference('has no chaingraph-gw system.info'), async () => {
  const before = Date.now();
  const info = await c.client.system.info.query();
  assert.equal(info.name, 'chaingraph-gw');
  assert.equal(typeof info.version, 'string');
  assert.ok(info.version.length > 0, 'version non-empty');
  assert.equal(typeof info.instanceId, 'string');
  assert.ok(info.instanceId.length > 0, 'instanceId non-empty');
  assert.ok('role' in info, 'role present');
  assert.ok('mode' in info, 'mode present');
  assert.ok(info.startedAt instanceof Date, `startedAt must be a Date (superjson), got ${info.startedAt}`);
  assert.ok(!Number.isNaN(info.startedAt.getTime()));
  assert.ok(info.startedAt.getTime() <= before + 1000, 'startedAt not in the future');
  assert.equal(typeof info.uptimeSeconds, 'number');
  assert.ok(info.uptimeSeconds >= 0);
  // stable per process
  const again = await c.client.system.info.query();
  assert.equal(again.instanceId, info.instanceId);
  assert.equal(again.startedAt.getTime(), info.startedAt.getTime());
  assert.ok(again.uptimeSeconds >= info.uptimeSeconds);
});

test('system.echo: plain JSON values', async () => {
  for (const v of [
    'hello',
    '',
    0,
    42,
    -1.5,
    true,
    false,
    null,
    [],
    {},
    [1, 'two', { three: [3] }],
    { a: { b: { c: [null, 1, 'x'] } }, 'ünïcødé ✓': '🚀' },
  ]) {
    assert.deepStrictEqual(await c.client.system.echo.query(v), v, JSON.stringify(v));
  }
});

test('system.echo: undefined (root, in arrays, in objects)', async () => {
  assert.strictEqual(await c.client.system.echo.query(undefined), undefined);
  assert.strictEqual(await c.client.system.echo.query(), undefined);
  for (const v of [
    [undefined],
    [undefined, 1, undefined],
    { a: undefined, b: 1 },
    { nested: { list: [1, undefined, { x: undefined }] } },
  ]) {
    assert.deepStrictEqual(await c.client.system.echo.query(v), v);
  }
});

test('system.echo: Date', async () => {
  for (const v of [
    new Date(0),
    new Date('2024-01-02T03:04:05.678Z'),
    { at: new Date('1999-12-31T23:59:59.999Z'), list: [new Date(1), new Date(2)] },
  ]) {
    assert.deepStrictEqual(await c.client.system.echo.query(v), v);
  }
});

test('system.echo: bigint (small and beyond 2^53), numbers stay numbers', async () => {
  for (const v of [
    0n,
    42n,
    -7n,
    12345678901234567890123n,
    { n: 1n, m: 1, big: -(2n ** 70n), arr: [2n, 2] },
  ]) {
    const got = await c.client.system.echo.query(v);
    assert.deepStrictEqual(got, v, `echo of ${String(v?.n ?? v)}`);
  }
});

test('system.echo: NaN, Infinity, -Infinity, -0', async () => {
  for (const v of [NaN, Infinity, -Infinity, -0, { a: NaN, b: Infinity, c: -Infinity, d: -0, e: 0 }]) {
    const got = await c.client.system.echo.query(v);
    assert.deepStrictEqual(got, v);
  }
  assert.ok(Object.is(await c.client.system.echo.query(-0), -0), '-0 must stay -0');
  assert.ok(Object.is(await c.client.system.echo.query(0), 0), '0 must stay 0');
});

test('system.echo: Map (with object keys), Set, RegExp', async () => {
  const values = [
    new Map([
      ['k', 1],
      [2, new Date(0)],
    ]),
    new Map([
      [{ a: 1 }, new Set([1n])],
      [['arr', 'key'], 'v'],
      [null, undefined],
    ]),
    new Set([1, 'a', new Date(5), { o: true }]),
    new Set(),
    new Map(),
    /ab+c/gi,
    { r: /^x\/y$/m, m: new Map([[1, new Map([[2, 3]])]]) },
  ];
  for (const v of values) {
    const got = await c.client.system.echo.query(v);
    assert.deepStrictEqual(got, v);
  }
  const re = await c.client.system.echo.query(/ab+c/gi);
  assert.ok(re instanceof RegExp);
  assert.equal(re.source, 'ab+c');
  assert.equal(re.flags, 'gi');
});

test('system.echo: keys containing dots and backslashes', async () => {
  const v = {
    'a.b': new Date(1),
    'c\\d': new Date(2),
    'e.f\\g.': { 'h.i': [new Date(3), undefined, 5n] },
    '': new Set([new Date(4)]),
    plain: 'x.y\\z',
  };
  assert.deepStrictEqual(await c.client.system.echo.query(v), v);
});

test('query called as mutation → NOT_FOUND', async () => {
  const err = await rejection(c.client.system.echo.mutate('x'));
  assertClientError(err, {
    code: 'NOT_FOUND',
    message: 'No "mutation"-procedure on path "system.echo"',
    path: 'system.echo',
  });
});

test('unknown path → NOT_FOUND', async () => {
  const err = await rejection(c.client.system.nope.query('x'));
  assertClientError(err, {
    code: 'NOT_FOUND',
    message: 'No "query"-procedure on path "system.nope"',
    path: 'system.nope',
  });
  const err2 = await rejection(c.client.nothing.here.at.all.mutate());
  assertClientError(err2, {
    code: 'NOT_FOUND',
    message: 'No "mutation"-procedure on path "nothing.here.at.all"',
    path: 'nothing.here.at.all',
  });
  // a subscription procedure called as a query
  const err3 = await rejection(c.client.system.ticks.query({ count: 1 }));
  assertClientError(err3, {
    code: 'NOT_FOUND',
    message: 'No "query"-procedure on path "system.ticks"',
    path: 'system.ticks',
  });
});

test('system.ticks: input validation error (count 0) → BAD_REQUEST with zodError', async () => {
  const sub = recordSubscription(c.client.system.ticks, { count: 0 });
  assert.equal(await withTimeout(sub.done, 5000, 'ticks error'), 'error');
  assert.equal(sub.started, 0, 'no started on setup error');
  assert.equal(sub.data.length, 0);
  const err = sub.error;
  assertClientError(err, { code: 'BAD_REQUEST', path: 'system.ticks' });
  const z = err.data.zodError;
  assert.ok(z && typeof z === 'object', `data.zodError missing: ${JSON.stringify(err.data)}`);
  assert.deepStrictEqual(z.formErrors, []);
  assert.deepStrictEqual(Object.keys(z.fieldErrors), ['count']);
  assert.ok(Array.isArray(z.fieldErrors.count) && z.fieldErrors.count.length >= 1);
  for (const m of z.fieldErrors.count) assert.equal(typeof m, 'string');
});

test('system.ticks: other invalid inputs → BAD_REQUEST', async () => {
  for (const input of [
    { count: 1_000_001 },
    { count: 1.5 },
    { count: 3, intervalMs: -1 },
    { count: '3' },
    undefined,
  ]) {
    const sub = recordSubscription(c.client.system.ticks, input);
    assert.equal(await withTimeout(sub.done, 5000, `ticks ${JSON.stringify(input)}`), 'error');
    assertClientError(sub.error, { code: 'BAD_REQUEST', path: 'system.ticks' });
    assert.equal(sub.data.length, 0);
  }
});

test('system.ticks: tracked events 0..count-1 then the stream ends', async () => {
  const t0 = Date.now();
  const sub = recordSubscription(c.client.system.ticks, { count: 5 });
  assert.equal(await withTimeout(sub.done, 5000, 'ticks complete'), 'complete');
  assert.equal(sub.error, null);
  assert.equal(sub.started, 1);
  assert.equal(sub.stopped, 1, 'onStopped once');
  assert.equal(sub.completed, 1, 'onComplete once');
  assert.equal(sub.data.length, 5);
  sub.data.forEach((ev, i) => {
    assert.deepStrictEqual(Object.keys(ev).sort(), ['data', 'id']);
    assert.equal(ev.id, String(i));
    assert.equal(ev.data.i, i);
    assert.ok(ev.data.at instanceof Date, 'data.at is a Date');
    assert.ok(Math.abs(ev.data.at.getTime() - t0) < 10_000, 'at is about now');
  });
});

test('system.ticks: intervalMs spaces the events', async () => {
  const sub = recordSubscription(c.client.system.ticks, { count: 4, intervalMs: 100 });
  assert.equal(await withTimeout(sub.done, 5000, 'ticks complete'), 'complete');
  assert.deepStrictEqual(
    sub.data.map((e) => e.id),
    ['0', '1', '2', '3'],
  );
  const span = sub.data[3].data.at.getTime() - sub.data[0].data.at.getTime();
  assert.ok(span >= 250, `3 intervals of 100 ms took ${span} ms`);
});

test('system.ticks: lastEventId in the input resumes after that id', async () => {
  const sub = recordSubscription(c.client.system.ticks, { count: 6, lastEventId: '2' });
  assert.equal(await withTimeout(sub.done, 5000, 'ticks complete'), 'complete');
  assert.deepStrictEqual(
    sub.data.map((e) => e.id),
    ['3', '4', '5'],
  );
  assert.deepStrictEqual(
    sub.data.map((e) => e.data.i),
    [3, 4, 5],
  );
});

test('unsubscribe mid-stream with the official client stops the events', async () => {
  let unsubscribedAt = -1;
  const sub = recordSubscription(
    c.client.system.ticks,
    { count: 1000, intervalMs: 20 },
    {
      onData: (d, s) => {
        if (s.data.length === 5) {
          unsubscribedAt = s.data.length;
          s.unsubscribe();
        }
      },
    },
  );
  await sleep(600);
  assert.equal(unsubscribedAt, 5);
  assert.equal(sub.data.length, 5, 'no events after unsubscribe');
  assert.equal(sub.error, null);
  // the connection is still fine
  assert.equal(await c.client.system.echo.query('still-ok'), 'still-ok');
});

test('many concurrent subscriptions and queries on one connection', async () => {
  const subs = Array.from({ length: 20 }, (_, k) =>
    recordSubscription(c.client.system.ticks, { count: 10 + k }),
  );
  const queries = Array.from({ length: 50 }, (_, k) => c.client.system.echo.query({ k }));
  const results = await withTimeout(Promise.all(queries), 5000, 'queries');
  results.forEach((r, k) => assert.deepStrictEqual(r, { k }));
  const ends = await withTimeout(Promise.all(subs.map((s) => s.done)), 10_000, 'subscriptions');
  ends.forEach((e) => assert.equal(e, 'complete'));
  subs.forEach((s, k) =>
    assert.deepStrictEqual(
      s.data.map((e) => e.data.i),
      Array.from({ length: 10 + k }, (_, i) => i),
    ),
  );
});

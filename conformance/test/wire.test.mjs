// Raw-frame behaviour: batching, PING/PONG, subscription.stop, malformed frames, id and
// jsonrpc echo, duplicate subscription ids, oversized frames.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  beyondReference,
  gatewayFixture,
  makeClient,
  openRaw,
  rawError,
  sj,
  sleep,
  superjsonDeserialize,
} from '../lib/gateway.mjs';
import { assertErrorShape } from '../lib/expect.mjs';

let gw;
const raws = [];
let client;
gatewayFixture({
  setup: (g) => {
    gw = g;
  },
  teardown: async () => {
    for (const r of raws) r.close();
    await client?.close();
  },
});

async function raw(query) {
  const r = await openRaw(gw.url, { query });
  raws.push(r);
  return r;
}

const q = (id, input, path = 'system.echo', extra = {}) => ({
  id,
  method: 'query',
  params: { path, input: sj(input) },
  ...extra,
});
const sub = (id, input, path = 'system.ticks', extra = {}) => ({
  id,
  method: 'subscription',
  params: { path, input: sj(input) },
  ...extra,
});

/** Error frame: asserts the error object is superjson-wrapped and returns the plain shape. */
function errorOf(msg) {
  assert.ok(msg.error && typeof msg.error === 'object', `no error in ${JSON.stringify(msg)}`);
  assert.ok('json' in msg.error, `error must be superjson-wrapped {json:…}: ${JSON.stringify(msg)}`);
  return rawError(msg);
}

/** Asserts the socket still answers a query after whatever happened before. */
async function assertUsable(r, id = 9000 + Math.floor(Math.random() * 1000)) {
  const from = r.frames.length;
  r.send(q(id, 'still-alive'));
  const m = await r.waitForJSON((m) => m.id === id, { from, what: `reply to ${id}` });
  assert.deepStrictEqual(m, { id, result: { type: 'data', data: { json: 'still-alive' } } });
}

test('batching: the client sends same-tick queries as one array frame', async () => {
  client = makeClient({ url: gw.url });
  assert.equal(await client.client.system.echo.query('warm-up'), 'warm-up');
  const before = client.sent.length;
  const results = await Promise.all([
    client.client.system.echo.query('a'),
    client.client.system.echo.query({ b: new Date(7) }),
    client.client.system.echo.query(3n),
  ]);
  assert.deepStrictEqual(results, ['a', { b: new Date(7) }, 3n]);
  const frames = client.sent.slice(before).filter((f) => f !== 'PING' && f !== 'PONG');
  assert.equal(frames.length, 1, `expected one batched frame, sent: ${frames.join(' | ')}`);
  const batch = JSON.parse(frames[0]);
  assert.ok(Array.isArray(batch), 'batched frame is a JSON array');
  assert.equal(batch.length, 3);
  for (const el of batch) assert.equal(el.method, 'query');
  // responses are never batched
  for (const f of client.received) {
    if (f === 'PING' || f === 'PONG') continue;
    assert.ok(!Array.isArray(JSON.parse(f)), `server sent an array frame: ${f}`);
  }
});

test('batching: a raw array frame gets one response frame per element', async () => {
  const r = await raw();
  r.send([q(11, 'x'), q(12, { y: [1, 2] }), q(13, 'z', 'system.nope'), sub(14, { count: 2 })]);
  const ids = [11, 12, 13];
  for (const id of ids) await r.waitForJSON((m) => m.id === id, { what: `reply ${id}` });
  await r.waitForJSON((m) => m.id === 14 && m.result?.type === 'stopped', { what: 'sub 14 stopped' });
  for (const f of r.frames) assert.ok(!Array.isArray(f.json), `array frame from server: ${f.text}`);
  assert.deepStrictEqual(r.json(11), [{ id: 11, result: { type: 'data', data: { json: 'x' } } }]);
  assert.deepStrictEqual(r.json(12), [{ id: 12, result: { type: 'data', data: { json: { y: [1, 2] } } } }]);
  assert.equal(r.json(13).length, 1);
  assertErrorShape(errorOf(r.json(13)[0]), {
    code: 'NOT_FOUND',
    message: 'No "query"-procedure on path "system.nope"',
    path: 'system.nope',
  });
  const s = r.json(14);
  assert.deepStrictEqual(
    s.map((m) => m.result?.type),
    ['started', 'data', 'data', 'stopped'],
  );
  assert.deepStrictEqual(s[0], { id: 14, result: { type: 'started' } });
  assert.deepStrictEqual(s[3], { id: 14, result: { type: 'stopped' } });
  // tracked event wire form: result.id raw, result.data = superjson({id, data})
  for (const [k, m] of s.slice(1, 3).entries()) {
    assert.equal(m.result.id, String(k));
    const ev = superjsonDeserialize(m.result.data);
    assert.equal(ev.id, String(k));
    assert.equal(ev.data.i, k);
    assert.ok(ev.data.at instanceof Date);
    assert.deepStrictEqual(Object.keys(m).sort(), ['id', 'result']);
  }
  assert.equal(r.frames.length, 3 + 4, 'no extra frames');
});

test('PING → PONG (bare text frames)', async () => {
  const r = await raw();
  r.send('PING');
  const f = await r.next();
  assert.equal(f.text, 'PONG');
  // PONG from the client is ignored; PING is answered in order with queued replies
  r.send('PONG');
  r.send(q(1, 'before-ping'));
  r.send('PING');
  const a = await r.next();
  const b = await r.next();
  assert.deepStrictEqual(a.json, { id: 1, result: { type: 'data', data: { json: 'before-ping' } } });
  assert.equal(b.text, 'PONG');
  await sleep(150);
  assert.equal(r.frames.length, 3, `unexpected frames: ${r.frames.map((x) => x.text).join(' | ')}`);
});

test('subscription.stop mid-stream → stopped and no more data', async () => {
  const r = await raw();
  r.send(sub(21, { count: 1000, intervalMs: 20 }));
  await r.waitForJSON((m) => m.id === 21 && m.result?.type === 'started', { what: 'started' });
  await r.waitFor(() => r.json(21).filter((m) => m.result?.type === 'data').length >= 3, {
    what: '3 events',
  });
  r.send({ id: 21, method: 'subscription.stop' });
  const stoppedFrame = await r.waitFor((f) => f.json?.id === 21 && f.json?.result?.type === 'stopped', {
    timeoutMs: 1000,
    what: 'stopped',
  });
  assert.deepStrictEqual(stoppedFrame.json, { id: 21, result: { type: 'stopped' } });
  const idx = r.frames.indexOf(stoppedFrame);
  await sleep(300);
  const after = r.frames.slice(idx + 1);
  assert.deepStrictEqual(
    after.map((f) => f.text),
    [],
    'nothing after stopped',
  );
  const types = r.json(21).map((m) => m.result?.type);
  assert.equal(types.filter((t) => t === 'stopped').length, 1);
  assert.ok(!types.includes('error'));
  await assertUsable(r);
});

test('subscription.stop for an unknown or finished id is ignored (no reply)', async () => {
  const r = await raw();
  r.send({ id: 999, method: 'subscription.stop' });
  r.send({ id: 'nope', method: 'subscription.stop' });
  // a finished subscription: the official 11.25 client still sends a stop after `stopped`
  r.send(sub(31, { count: 1 }));
  await r.waitForJSON((m) => m.id === 31 && m.result?.type === 'stopped', { what: 'sub 31 stopped' });
  const mark = r.frames.length;
  r.send({ id: 31, method: 'subscription.stop' });
  await sleep(300);
  r.send('PING');
  const f = await r.waitFor((x) => x.text === 'PONG', { from: mark, what: 'PONG' });
  assert.deepStrictEqual(
    r.frames.slice(mark).map((x) => x.text),
    ['PONG'],
    'no reply to stops of unknown ids',
  );
  assert.ok(f);
  for (const fr of r.frames) {
    assert.notEqual(fr.json?.id, 999);
    assert.notEqual(fr.json?.id, 'nope');
  }
  await assertUsable(r);
});

test('duplicate subscription id → BAD_REQUEST "Duplicate id N"; the first keeps running', async () => {
  const r = await raw();
  r.send(sub(41, { count: 1000, intervalMs: 30 }));
  await r.waitForJSON((m) => m.id === 41 && m.result?.type === 'data', { what: 'first data' });
  r.send(sub(41, { count: 5 }));
  const errFrame = await r.waitFor((f) => f.json?.id === 41 && f.json?.error, { what: 'duplicate error' });
  assertErrorShape(errorOf(errFrame.json), { code: 'BAD_REQUEST', message: 'Duplicate id 41' });
  const idx = r.frames.indexOf(errFrame);
  await r.waitFor((f) => f.json?.id === 41 && f.json?.result?.type === 'data', {
    from: idx + 1,
    what: 'data after the duplicate error',
  });
  const ids = r
    .json(41)
    .filter((m) => m.result?.type === 'data')
    .map((m) => Number(m.result.id));
  assert.deepStrictEqual(
    ids,
    ids.map((_, i) => i),
    'the original subscription continues in order',
  );
  assert.equal(r.json(41).filter((m) => m.result?.type === 'started').length, 1);
  r.send({ id: 41, method: 'subscription.stop' });
  await r.waitForJSON((m) => m.id === 41 && m.result?.type === 'stopped', { what: 'stopped' });
});

test('ids given as strings are echoed unchanged', async () => {
  const r = await raw();
  r.send(q('abc', 'hi'));
  r.send(q('42', 'str-42'));
  r.send(q(42, 'num-42'));
  await r.waitFor(() => r.json().length >= 3, { what: '3 replies' });
  assert.deepStrictEqual(r.json('abc'), [{ id: 'abc', result: { type: 'data', data: { json: 'hi' } } }]);
  assert.deepStrictEqual(r.json('42'), [{ id: '42', result: { type: 'data', data: { json: 'str-42' } } }]);
  assert.deepStrictEqual(r.json(42), [{ id: 42, result: { type: 'data', data: { json: 'num-42' } } }]);
  // string-id subscription and stop
  r.send(sub('s-1', { count: 1000, intervalMs: 20 }));
  await r.waitForJSON((m) => m.id === 's-1' && m.result?.type === 'data', { what: 's-1 data' });
  r.send({ id: 's-1', method: 'subscription.stop' });
  await r.waitForJSON((m) => m.id === 's-1' && m.result?.type === 'stopped', { what: 's-1 stopped' });
  assert.deepStrictEqual(r.json('s-1')[0], { id: 's-1', result: { type: 'started' } });
  // an error under a string id
  r.send(q('e-1', 1, 'system.nope'));
  const e = await r.waitForJSON((m) => m.id === 'e-1', { what: 'e-1' });
  assertErrorShape(errorOf(e), { code: 'NOT_FOUND', path: 'system.nope' });
});

test('jsonrpc "2.0" is echoed when sent (and only then)', async () => {
  const r = await raw();
  r.send(q(51, 'rpc', 'system.echo', { jsonrpc: '2.0' }));
  r.send(q(52, 'plain'));
  r.send(q(53, 'x', 'system.nope', { jsonrpc: '2.0' }));
  r.send(sub(54, { count: 1 }, 'system.ticks', { jsonrpc: '2.0' }));
  await r.waitForJSON((m) => m.id === 54 && m.result?.type === 'stopped', { what: 'sub 54 stopped' });
  await r.waitFor(() => r.json(51).length && r.json(52).length && r.json(53).length, {
    what: 'replies 51-53',
  });
  assert.deepStrictEqual(r.json(51), [
    { id: 51, jsonrpc: '2.0', result: { type: 'data', data: { json: 'rpc' } } },
  ]);
  assert.deepStrictEqual(r.json(52), [{ id: 52, result: { type: 'data', data: { json: 'plain' } } }]);
  assert.equal(r.json(53)[0].jsonrpc, '2.0');
  assertErrorShape(errorOf(r.json(53)[0]), { code: 'NOT_FOUND', path: 'system.nope' });
  const s = r.json(54);
  assert.deepStrictEqual(
    s.map((m) => m.result.type),
    ['started', 'data', 'stopped'],
  );
  for (const m of s) assert.equal(m.jsonrpc, '2.0', `jsonrpc on ${JSON.stringify(m)}`);
});

test('PARSE_ERROR with id:null for unreadable frames; the connection stays usable', async () => {
  const r = await raw();
  const junk = [
    'not json',
    '{"id":1,"method":"query",',
    '42',
    '"str"',
    'null',
    '{"method":"query","params":{"path":"system.echo"}}', // no id
    '{"id":null,"method":"query","params":{"path":"system.echo"}}',
    '{"id":true,"method":"query","params":{"path":"system.echo"}}',
    '{"id":{"x":1},"method":"query","params":{"path":"system.echo"}}',
  ];
  for (const frame of junk) {
    const mark = r.frames.length;
    r.send(frame);
    const m = await r.waitForJSON((m) => m.id === null && m.error, {
      from: mark,
      what: `id:null PARSE_ERROR for ${frame}`,
    });
    assertErrorShape(errorOf(m), { code: 'PARSE_ERROR' }, `for frame ${frame}`);
    assert.deepStrictEqual(Object.keys(m).sort(), ['error', 'id']);
    assert.ok(r.isOpen, `socket closed after ${frame}`);
  }
  await assertUsable(r);
});

test(
  'PARSE_ERROR under the request id whenever the id is readable',
  beyondReference('answers with id:null (or not at all) instead of the readable id'),
  async () => {
    const r = await raw();
    const cases = [
      [5, '{"id":5,"method":"query","params":{"path":"system.echo","input":{"nojson":1}}}'],
      [7, '{"id":7,"method":"bogus"}'],
      [8, '{"id":8,"method":"query","params":"not-an-object"}'],
      [9, '{"id":9,"method":"query","params":{"path":42}}'],
      [10, '{"id":10,"jsonrpc":"1.0","method":"query","params":{"path":"system.echo","input":{"json":1}}}'],
      ['s-11', '{"id":"s-11","method":"subscription","params":{"path":"system.ticks","input":{"json":{"count":1}},"lastEventId":5}}'],
    ];
    for (const [id, frame] of cases) {
      const mark = r.frames.length;
      r.send(frame);
      const f = await r.waitFor((fr) => fr.json && (fr.json.id === id || fr.json.id === null), {
        from: mark,
        what: `reply to ${frame}`,
      });
      assert.equal(f.json.id, id, `expected the error under id ${JSON.stringify(id)}, got ${f.text}`);
      assertErrorShape(errorOf(f.json), { code: 'PARSE_ERROR' }, `for frame ${frame}`);
      assert.equal(f.json.result, undefined);
    }
    await assertUsable(r);
  },
);

test(
  'an array frame with one malformed element still answers the others',
  beyondReference('drops the whole array on one malformed element'),
  async () => {
    const r = await raw();
    r.send(`[${JSON.stringify(q(61, 'ok-61'))},{"id":62,"method":"bogus"},${JSON.stringify(q(63, 'ok-63'))}]`);
    await r.waitFor(() => r.json(61).length && r.json(62).length && r.json(63).length, {
      what: 'replies 61, 62, 63',
    });
    assert.deepStrictEqual(r.json(61), [{ id: 61, result: { type: 'data', data: { json: 'ok-61' } } }]);
    assert.deepStrictEqual(r.json(63), [{ id: 63, result: { type: 'data', data: { json: 'ok-63' } } }]);
    assertErrorShape(errorOf(r.json(62)[0]), { code: 'PARSE_ERROR' });
  },
);

test(
  'frame > 1 MiB → close 1009; smaller frames work; new connections still work',
  beyondReference('ws default maxPayload is 100 MiB, no 1009'),
  async () => {
    const r = await raw();
    const big600k = 'x'.repeat(600 * 1024);
    r.send(q(71, big600k));
    const ok = await r.waitForJSON((m) => m.id === 71, { timeoutMs: 5000, what: '600 KiB echo' });
    assert.equal(ok.result.data.json.length, big600k.length);

    const huge = 'y'.repeat(1024 * 1024 + 64 * 1024);
    r.send(q(72, huge));
    const info = await r.waitClose(5000);
    assert.ok(info, 'socket must be closed after an oversized frame');
    assert.equal(info.code, 1009, `close code ${info.code} ${info.reason}`);
    assert.equal(r.json(72).length, 0, 'no reply to the oversized frame');

    assert.equal(gw.exitInfo, null, 'gateway process still running');
    const r2 = await raw();
    await assertUsable(r2);
  },
);

// connectionParams handshake and client-side keep-alive.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayFixture, makeClient, openRaw, rawError, sj, sleep } from '../lib/gateway.mjs';
import { assertErrorShape } from '../lib/expect.mjs';

let gw;
const cleanups = [];
gatewayFixture({
  setup: (g) => {
    gw = g;
  },
  teardown: async () => {
    for (const f of cleanups) await f();
  },
});

function client(opts) {
  const c = makeClient({ url: gw.url, ...opts });
  cleanups.push(() => c.close());
  return c;
}
async function raw(query) {
  const r = await openRaw(gw.url, { query });
  cleanups.push(() => r.close());
  return r;
}

test('client with connectionParams {token:"abc"} works', async () => {
  const c = client({ connectionParams: { token: 'abc' } });
  assert.equal(await c.client.system.echo.query('with-params'), 'with-params');
  assert.deepStrictEqual(await c.client.system.echo.query({ d: new Date(3) }), { d: new Date(3) });
  assert.match(c.sockets[0].url, /[?&]connectionParams=1\b/);
  assert.deepStrictEqual(JSON.parse(c.sent[0]), { method: 'connectionParams', data: { token: 'abc' } });
  const done = new Promise((resolve, reject) => {
    const ev = [];
    c.client.system.ticks.subscribe(
      { count: 3 },
      { onData: (d) => ev.push(d.id), onError: reject, onComplete: () => resolve(ev) },
    );
  });
  assert.deepStrictEqual(await done, ['0', '1', '2']);
});

test('client with an async connectionParams function works', async () => {
  const c = client({
    connectionParams: async () => {
      await sleep(20);
      return { token: 'xyz', other: 'value' };
    },
  });
  assert.equal(await c.client.system.echo.query('async-params'), 'async-params');
  assert.deepStrictEqual(JSON.parse(c.sent[0]), {
    method: 'connectionParams',
    data: { token: 'xyz', other: 'value' },
  });
});

test('raw ?connectionParams=1: PING does not consume the slot; valid params then requests work', async () => {
  const r = await raw('connectionParams=1');
  r.send('PING');
  assert.equal((await r.next()).text, 'PONG');
  r.send({ method: 'connectionParams', data: { token: 'abc' } });
  r.send({ id: 1, method: 'query', params: { path: 'system.echo', input: sj('after-params') } });
  const m = await r.waitForJSON((m) => m.id === 1, { what: 'reply 1' });
  assert.deepStrictEqual(m, { id: 1, result: { type: 'data', data: { json: 'after-params' } } });
  assert.equal(r.json().length, 1, 'no acknowledgement frame for connectionParams');

  const r2 = await raw('connectionParams=1');
  r2.send({ method: 'connectionParams', data: null });
  r2.send({ id: 2, method: 'query', params: { path: 'system.echo', input: sj('null-params') } });
  const m2 = await r2.waitForJSON((m) => m.id === 2, { what: 'reply 2' });
  assert.deepStrictEqual(m2.result, { type: 'data', data: { json: 'null-params' } });
});

test('raw ?connectionParams=1: requests sent together with the params frame are not lost', async () => {
  const r = await raw('connectionParams=1');
  // params + batch in quick succession, before any reply
  r.send({ method: 'connectionParams', data: { token: 'abc' } });
  r.send([
    { id: 1, method: 'query', params: { path: 'system.echo', input: sj(1) } },
    { id: 2, method: 'query', params: { path: 'system.echo', input: sj(2) } },
  ]);
  r.send({ id: 3, method: 'subscription', params: { path: 'system.ticks', input: sj({ count: 2 }) } });
  await r.waitFor(
    () => r.json(1).length && r.json(2).length && r.json(3).some((m) => m.result?.type === 'stopped'),
    { what: 'replies 1, 2 and sub 3 stopped' },
  );
  assert.deepStrictEqual(r.json(1)[0].result.data, { json: 1 });
  assert.deepStrictEqual(r.json(2)[0].result.data, { json: 2 });
});

test('raw ?connectionParams=1 with invalid params → id:null PARSE_ERROR, socket closed', async () => {
  for (const frame of [
    { method: 'connectionParams', data: { x: 1 } },
    { method: 'connectionParams', data: 'str' },
    { method: 'connectionParams' },
    'not json',
  ]) {
    const r = await raw('connectionParams=1');
    r.send(frame);
    const m = await r.waitForJSON((m) => m.id === null && m.error, {
      what: `PARSE_ERROR for ${JSON.stringify(frame)}`,
    });
    assert.ok('json' in m.error, `error must be superjson-wrapped: ${JSON.stringify(m)}`);
    assertErrorShape(rawError(m), { code: 'PARSE_ERROR' }, `for ${JSON.stringify(frame)}`);
    const closed = await r.waitClose(3000);
    assert.ok(closed, `socket must be closed after invalid connectionParams ${JSON.stringify(frame)}`);
  }
});

test('client keepAlive (intervalMs 300, pongTimeoutMs 300) stays connected ≥ 2 s', async () => {
  let opens = 0;
  const closes = [];
  const c = client({
    keepAlive: { enabled: true, intervalMs: 300, pongTimeoutMs: 300 },
    onOpen: () => opens++,
    onClose: (e) => closes.push(e?.code),
  });
  assert.equal(await c.client.system.echo.query('ka'), 'ka');
  await sleep(2200);
  assert.equal(opens, 1, 'exactly one socket opened');
  assert.deepStrictEqual(closes, [], 'socket never closed');
  const pings = c.sent.filter((f) => f === 'PING').length;
  const pongs = c.received.filter((f) => f === 'PONG').length;
  assert.ok(pings >= 3, `client sent ${pings} PINGs`);
  assert.ok(pongs >= pings - 1, `server answered ${pongs} of ${pings} PINGs`);
  assert.equal(await c.client.system.echo.query('ka-after'), 'ka-after');
});

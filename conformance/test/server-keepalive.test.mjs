// Server-side keep-alive: a gateway started with CHAINGRAPH_KEEPALIVE_PING_MS=300 and
// CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS=300 sends "PING" after 300 ms of inbound silence and
// terminates (1006) a socket that stays silent for another 300 ms.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayFixture, makeClient, openRaw, sleep } from '../lib/gateway.mjs';

let gw;
const cleanups = [];
gatewayFixture({
  env: {
    CHAINGRAPH_KEEPALIVE_ENABLED: 'true',
    CHAINGRAPH_KEEPALIVE_PING_MS: '300',
    CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS: '300',
  },
  setup: (g) => {
    gw = g;
  },
  teardown: async () => {
    for (const f of cleanups) await f();
  },
});

test('a silent socket gets "PING" and is terminated (1006) within ~1.5 s', async () => {
  const t0 = Date.now();
  const r = await openRaw(gw.url);
  cleanups.push(() => r.close());
  const ping = await r.waitFor((f) => f.text === 'PING', { timeoutMs: 1500, what: 'PING' });
  const info = await r.waitClose(1500);
  assert.ok(info, 'socket must be terminated');
  assert.equal(info.code, 1006, `close code ${info.code} (expected abrupt termination)`);
  const pingAfter = ping.at - t0;
  const closeAfter = info.at - t0;
  assert.ok(pingAfter >= 200, `PING came too early (${pingAfter} ms)`);
  assert.ok(closeAfter <= 1600, `terminated after ${closeAfter} ms`);
  assert.ok(closeAfter - pingAfter >= 200, `terminated ${closeAfter - pingAfter} ms after PING`);
  assert.deepStrictEqual(
    r.frames.map((f) => f.text),
    ['PING'],
  );
});

test('a socket that answers "PONG" stays open', async () => {
  const r = await openRaw(gw.url);
  cleanups.push(() => r.close());
  r.autoPong = true;
  await sleep(1800);
  assert.ok(r.isOpen, `socket closed: ${JSON.stringify(r.closeInfo)}`);
  const pings = r.frames.filter((f) => f.text === 'PING').length;
  assert.ok(pings >= 2, `got ${pings} PINGs in 1.8 s`);
  r.send({ id: 1, method: 'query', params: { path: 'system.echo', input: { json: 'alive' } } });
  const m = await r.waitForJSON((m) => m.id === 1, { what: 'reply' });
  assert.deepStrictEqual(m.result, { type: 'data', data: { json: 'alive' } });
});

test('any inbound frame counts as activity (a chatty socket gets no PING)', async () => {
  const r = await openRaw(gw.url);
  cleanups.push(() => r.close());
  for (let i = 0; i < 12; i++) {
    r.send({ id: 100 + i, method: 'query', params: { path: 'system.echo', input: { json: i } } });
    await sleep(120);
  }
  assert.ok(r.isOpen);
  assert.equal(r.frames.filter((f) => f.text === 'PING').length, 0, 'no PING while the client talks');
});

test('the official client (no keepAlive option) answers PINGs and stays connected', async () => {
  let opens = 0;
  const closes = [];
  const c = makeClient({ url: gw.url, onOpen: () => opens++, onClose: (e) => closes.push(e?.code) });
  cleanups.push(() => c.close());
  assert.equal(await c.client.system.echo.query('a'), 'a');
  await sleep(1500);
  assert.equal(opens, 1);
  assert.deepStrictEqual(closes, []);
  assert.ok(c.received.filter((f) => f === 'PING').length >= 2, 'server sent PINGs');
  assert.equal(await c.client.system.echo.query('b'), 'b');
});

test('a long subscription is not cut by the server keep-alive', async () => {
  const c = makeClient({ url: gw.url });
  cleanups.push(() => c.close());
  const ids = [];
  const end = await new Promise((resolve) => {
    c.client.system.ticks.subscribe(
      { count: 15, intervalMs: 100 },
      { onData: (d) => ids.push(Number(d.id)), onError: (e) => resolve(e), onComplete: () => resolve('complete') },
    );
  });
  assert.equal(end, 'complete');
  assert.deepStrictEqual(
    ids,
    Array.from({ length: 15 }, (_, i) => i),
  );
});

// Tracked-subscription resume across a hard gateway crash: the official client reconnects
// (default backoff) to a gateway restarted on the same port and re-subscribes with
// lastEventId; the union of received ids must be exactly 0..49, in order, no duplicates.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayFixture, makeClient, until, withTimeout } from '../lib/gateway.mjs';

let gw;
let c;
gatewayFixture({
  setup: (g) => {
    gw = g;
  },
  teardown: () => c?.close(),
});

test('tracked resume after kill -9 and restart on the same port', async () => {
  const opens = [];
  c = makeClient({ url: gw.url, onOpen: () => opens.push(Date.now()) });
  const ids = [];
  const starts = [];
  const states = [];
  const mismatches = [];
  let error = null;
  const done = new Promise((resolve) => {
    c.client.system.ticks.subscribe(
      { count: 50, intervalMs: 50 },
      {
        onStarted: () => starts.push(ids.length),
        onData: (d) => {
          if (d.id !== String(d.data.i)) mismatches.push(d);
          ids.push(Number(d.id));
        },
        onError: (e) => {
          error = e;
          resolve('error');
        },
        onComplete: () => resolve('complete'),
        onConnectionStateChange: (s) => states.push(s.state),
      },
    );
  });

  await until(() => ids.length >= 10, { timeoutMs: 5000, what: '10 events' });
  const firstInstance = await c.client.system.echo.query('before-crash');
  assert.equal(firstInstance, 'before-crash');
  const crashInfo = await gw.kill9();
  assert.equal(crashInfo.signal, 'SIGKILL');
  const seenBeforeCrash = ids.length;
  assert.ok(seenBeforeCrash < 50, 'crashed mid-stream');

  await gw.restart();

  const end = await withTimeout(done, 25_000, `stream to finish after restart (have ${ids.length} ids)`);
  assert.equal(end, 'complete', `subscription ended with ${end}: ${error?.message}`);
  assert.deepStrictEqual(
    ids,
    Array.from({ length: 50 }, (_, i) => i),
    'union of ids is exactly 0..49 in order',
  );
  assert.deepStrictEqual(mismatches, [], 'tracked id matches data.i');
  assert.ok(opens.length >= 2, 'client reconnected');
  assert.ok(starts.length >= 2, 'subscription was started again on the new connection');
  assert.ok(states.includes('connecting'), 'client went through connecting');
  assert.equal(await c.client.system.echo.query('after-restart'), 'after-restart');
});

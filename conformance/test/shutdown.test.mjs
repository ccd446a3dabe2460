// Graceful shutdown: SIGTERM makes the gateway broadcast {"id":null,"method":"reconnect"} to
// every socket; the official client keeps working through the drain and the restart.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayFixture, makeClient, openRaw, until, withTimeout } from '../lib/gateway.mjs';

let gw;
let c;
let r;
gatewayFixture({
  // a short drain so the test does not wait for the 10 s default
  env: { CHAINGRAPH_DRAIN_SECONDS: '2', REFERENCE_SHUTDOWN_GRACE_MS: '2000' },
  setup: (g) => {
    gw = g;
  },
  teardown: async () => {
    r?.close();
    await c?.close();
  },
});

test('SIGTERM → reconnect notice; the official client keeps working', async () => {
  const opens = [];
  c = makeClient({ url: gw.url, onOpen: () => opens.push(Date.now()) });
  const ids = [];
  let error = null;
  c.client.system.ticks.subscribe(
    { count: 1_000_000, intervalMs: 25 },
    {
      onData: (d) => ids.push(Number(d.id)),
      onError: (e) => {
        error = e;
      },
    },
  );
  await until(() => ids.length >= 5, { timeoutMs: 5000, what: '5 events' });
  assert.equal(await c.client.system.echo.query('before'), 'before');

  r = await openRaw(gw.url);
  // make sure the raw socket is fully set up on the server before the signal
  r.send({ id: 1, method: 'query', params: { path: 'system.echo', input: { json: 'raw' } } });
  await r.waitForJSON((m) => m.id === 1, { what: 'raw reply' });
  const mark = r.frames.length;

  gw.signal('SIGTERM');
  const note = await r.waitFor((f) => f.json?.method === 'reconnect', {
    from: mark,
    timeoutMs: 3000,
    what: 'reconnect notice',
  });
  assert.deepStrictEqual(note.json, { id: null, method: 'reconnect' });
  assert.deepStrictEqual(
    r.frames.slice(mark).map((f) => f.text),
    [note.text],
    'exactly one frame: the notice',
  );

  // during the drain: queries still answered (old socket or a new one)
  assert.equal(await withTimeout(c.client.system.echo.query('during-drain'), 5000, 'query during drain'), 'during-drain');
  r.close(); // let the gateway finish draining

  // The official client keeps its old socket while it cannot open a new one, so the gateway
  // drains for its whole drain time (2 s here), closes what is left and exits on its own.
  const exitInfo = await gw.waitExit(8000);
  if (!exitInfo) await gw.kill9();
  assert.ok(exitInfo, 'gateway exits on its own within drain time + margin after SIGTERM');
  const seenBeforeRestart = ids.length;
  await gw.restart();

  assert.equal(
    await withTimeout(c.client.system.echo.query('after-restart'), 20_000, 'query after restart'),
    'after-restart',
  );
  await until(() => ids.length >= seenBeforeRestart + 5, {
    timeoutMs: 20_000,
    what: 'subscription events after the restart',
  });
  assert.equal(error, null, `subscription errored: ${error?.message}`);
  assert.deepStrictEqual(
    ids,
    Array.from({ length: ids.length }, (_, i) => i),
    'tracked ids contiguous across the reconnect (no gaps, no duplicates)',
  );
  assert.ok(opens.length >= 2, 'client opened a new socket');
});

// Authentication and ownership with AUTH_ENABLED=true: HS256 tokens minted by
// `chaingraph-gw token`, passed the ChainGraph way (connectionParams.sessionBadAI) or on the
// upgrade request (cookie `session=`, `Authorization: Bearer`).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { REPO, RawSocket, gatewayFixture, sj, rawError, withTimeout } from '../lib/gateway.mjs';
import { assertClientError, assertErrorShape, rejection } from '../lib/expect.mjs';
import { WebSocket } from '../lib/deps.mjs';
import { makeChainGraphClient, watchExecution } from '../lib/chaingraph-client.mjs';

const SECRET = 'conformance-secret';
const run = promisify(execFile);

async function mint(user, role, secret = SECRET) {
  const { stdout } = await run(
    path.join(REPO, '.venv', 'bin', 'chaingraph-gw'),
    ['token', '--user', user, '--role', role, '--ttl', '1h'],
    { env: { ...process.env, AUTH_JWT_SECRET: secret } },
  );
  const token = stdout.trim();
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, `a JWT from chaingraph-gw token: ${stdout}`);
  return token;
}

let gw;
const tokens = {};
const clients = {};
gatewayFixture({
  env: { AUTH_ENABLED: 'true', AUTH_JWT_SECRET: SECRET },
  setup: async (g) => {
    gw = g;
    [tokens.alice, tokens.bob, tokens.admin, tokens.foreign] = await Promise.all([
      mint('alice', 'user'),
      mint('bob', 'user'),
      mint('root', 'admin'),
      mint('alice', 'user', 'some-other-secret'),
    ]);
    clients.anon = makeChainGraphClient({ url: gw.url });
    clients.alice = makeChainGraphClient({ url: gw.url, token: tokens.alice });
    clients.bob = makeChainGraphClient({ url: gw.url, token: tokens.bob });
    clients.admin = makeChainGraphClient({ url: gw.url, token: tokens.admin });
  },
  teardown: async () => {
    await Promise.all(Object.values(clients).map((c) => c.close()));
  },
});

/** A raw socket with upgrade headers (cookie / Authorization), optionally ?connectionParams=1. */
async function rawWithHeaders(headers, { query = '' } = {}) {
  const ws = new WebSocket(`${gw.url}${query}`, { headers });
  const raw = new RawSocket(ws);
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }),
    5000,
    'raw ws open',
  );
  return raw;
}

async function rawCall(raw, id, method, pathName, input) {
  raw.send({ id, method, params: { path: pathName, input: sj(input) } });
  return raw.waitForJSON((m) => m.id === id, { what: `response ${id}` });
}

const HELLO = {
  name: "Alice's hello",
  nodes: [
    { id: 'name', type: 'TextNode', values: { text: 'Ada' } },
    { id: 'log', type: 'DebugLogNode' },
  ],
  edges: [{ from: 'name.text', to: 'log.message' }],
};

let flowId;
let executionId;

test('no token: procedures that need a user answer UNAUTHORIZED', async () => {
  const { client } = clients.anon;
  assertClientError(await rejection(client.create.mutate({ flowId: 'V2whatever' })), {
    code: 'UNAUTHORIZED',
    message: 'UNAUTHORIZED',
    path: 'create',
  });
  assertClientError(await rejection(client.flows.create.mutate({ flow: HELLO })), {
    code: 'UNAUTHORIZED',
    path: 'flows.create',
  });
  assertClientError(await rejection(client.getRootExecutions.query({ flowId: 'V2whatever', limit: 10 })), {
    code: 'UNAUTHORIZED',
    path: 'getRootExecutions',
  });
  assertClientError(await rejection(client.getExecutionDetails.query({ executionId: 'EXwhatever' })), {
    code: 'UNAUTHORIZED',
    // ChainGraph's execution guard is built on the authed one: its "UNAUTHORIZED" comes first.
    message: 'UNAUTHORIZED',
    path: 'getExecutionDetails',
  });
});

test('alice creates a flow and an execution and runs it', async () => {
  const { client } = clients.alice;
  const flow = await client.flows.create.mutate({ flow: HELLO });
  assert.equal(flow.ownerId, 'alice');
  flowId = flow.id;
  ({ executionId } = await client.create.mutate({ flowId }));
  const w = watchExecution(client, { executionId, fromIndex: 0, eventTypes: [] });
  await withTimeout(w.startedP, 5000, 'started');
  await client.start.mutate({ executionId });
  const end = await w.waitTerminal();
  assert.equal(end.type, 'flow:completed');
  w.unsubscribe();
  const d = await client.getExecutionDetails.query({ executionId });
  assert.equal(d.ownerId, 'alice');
  assert.equal(d.status, 'completed');
  const roots = await client.getRootExecutions.query({ flowId, limit: 100 });
  assert.deepStrictEqual(
    roots.map((r) => r.execution.id),
    [executionId],
  );
  const mine = await client.flows.list.query({ limit: 500 });
  assert.ok(mine.items.every((i) => i.ownerId === 'alice'), 'a user lists only their own flows');
  assert.ok(mine.items.some((i) => i.id === flowId));
});

test("bob gets FORBIDDEN on alice's execution and flow", async () => {
  assert.ok(executionId, 'needs the previous test');
  const { client } = clients.bob;
  const noAccess = 'User does not have access to this flow';
  assertClientError(await rejection(client.getExecutionDetails.query({ executionId })), {
    code: 'FORBIDDEN',
    message: noAccess,
    path: 'getExecutionDetails',
  });
  for (const proc of ['start', 'stop', 'pause', 'resume']) {
    assertClientError(await rejection(client[proc].mutate({ executionId })), {
      code: 'FORBIDDEN',
      message: noAccess,
      path: proc,
    });
  }
  assertClientError(await rejection(client.getExecutionsTree.query({ executionId })), {
    code: 'FORBIDDEN',
    path: 'getExecutionsTree',
  });
  const w = watchExecution(client, { executionId, fromIndex: 0, eventTypes: [] });
  assert.equal(await withTimeout(w.ended, 5000, 'subscription error'), 'error');
  assertClientError(w.error, { code: 'FORBIDDEN', message: noAccess, path: 'subscribeToExecutionEvents' });
  assert.equal(w.started, 0, 'no started on a setup error');
  assert.equal(w.events.length, 0, "no events of alice's run");

  const notOwner = 'User does not own the flow';
  assertClientError(await rejection(client.flows.get.query({ flowId })), {
    code: 'FORBIDDEN',
    message: notOwner,
    path: 'flows.get',
  });
  assertClientError(await rejection(client.create.mutate({ flowId })), {
    code: 'FORBIDDEN',
    message: notOwner,
    path: 'create',
  });
  assertClientError(await rejection(client.getRootExecutions.query({ flowId, limit: 100 })), {
    code: 'FORBIDDEN',
    path: 'getRootExecutions',
  });
  assertClientError(await rejection(client.flows.update.mutate({ flowId, flow: HELLO })), {
    code: 'FORBIDDEN',
    path: 'flows.update',
  });
  assertClientError(await rejection(client.flows.delete.mutate({ flowId })), {
    code: 'FORBIDDEN',
    path: 'flows.delete',
  });
  const list = await client.flows.list.query({ limit: 500 });
  assert.ok(!list.items.some((i) => i.id === flowId), "alice's flow is not in bob's list");
});

test("an admin token sees alice's execution and flow", async () => {
  assert.ok(executionId, 'needs the previous test');
  const { client } = clients.admin;
  const d = await client.getExecutionDetails.query({ executionId });
  assert.equal(d.id, executionId);
  assert.equal(d.ownerId, 'alice');
  const tree = await client.getExecutionsTree.query({ executionId });
  assert.equal(tree[0].id, executionId);
  const flow = await client.flows.get.query({ flowId });
  assert.equal(flow.ownerId, 'alice');
  const list = await client.flows.list.query({ limit: 500 });
  assert.ok(list.items.some((i) => i.id === flowId), 'admins list every flow');
  const w = watchExecution(client, { executionId, fromIndex: 0, eventTypes: [] });
  assert.equal((await w.waitTerminal()).type, 'flow:completed');
  w.unsubscribe();
  // an admin may create executions of anyone's flow; the row's owner stays the flow owner
  const { executionId: other } = await client.create.mutate({ flowId });
  assert.equal((await client.getExecutionDetails.query({ executionId: other })).ownerId, 'alice');
  await client.stop.mutate({ executionId: other });
});

test('a garbage token makes the connection fail: {id:null} UNAUTHORIZED, socket closed, the call errors', async () => {
  const closes = [];
  const bad = makeChainGraphClient({
    url: gw.url,
    token: 'garbage',
    wsOptions: { onClose: (ev) => closes.push(ev?.code) },
  });
  clients.bad = bad;
  const err = await withTimeout(rejection(bad.client.flows.list.query({ limit: 10 })), 10_000, 'call to fail');
  assert.equal(err?.name, 'TRPCClientError', `the call errors with a TRPCClientError, got ${err}`);
  // The 11.25 client cannot match the {id:null} rejection to the call (protocol doc §1.2); if the
  // error carries a code at all, it must be UNAUTHORIZED.
  if (err.data?.code !== undefined) assert.equal(err.data.code, 'UNAUTHORIZED');
  const rejections = bad.received
    .filter((s) => typeof s === 'string' && s.startsWith('{'))
    .map((s) => JSON.parse(s))
    .filter((m) => m.id === null && m.error);
  assert.ok(rejections.length >= 1, `an {id:null,error} frame; received: ${bad.received.join('\n')}`);
  assertErrorShape(rawError(rejections[0]), { code: 'UNAUTHORIZED', message: /^Invalid session token: / });
  assert.ok(!bad.received.some((s) => typeof s === 'string' && s.includes('"result"')), 'nothing was served');
  await bad.close();
  delete clients.bad;

  // the same on the wire: ?connectionParams=1 + a bad token, and a token signed with another secret
  for (const [token, why] of [
    ['garbage', /malformed/],
    [tokens.foreign, /signature/],
  ]) {
    const raw = await rawWithHeaders({}, { query: '?connectionParams=1' });
    raw.send({ method: 'connectionParams', data: { sessionBadAI: token } });
    const msg = await raw.waitForJSON((m) => m.id === null, { what: 'connection rejection' });
    assertErrorShape(rawError(msg), { code: 'UNAUTHORIZED', message: why });
    const closed = await raw.waitClose(3000);
    assert.ok(closed, 'the server closes the socket');
    raw.close();
  }
  // and on the upgrade request (no connectionParams): rejected at once
  const raw = await rawWithHeaders({ authorization: 'Bearer not.a.jwt' });
  const msg = await raw.waitForJSON((m) => m.id === null, { what: 'connection rejection' });
  assertErrorShape(rawError(msg), { code: 'UNAUTHORIZED', message: /^Invalid session token/ });
  assert.ok(await raw.waitClose(3000), 'closed');
  raw.close();
});

test('token via cookie `session=` (and Authorization: Bearer) on a raw ws', async () => {
  assert.ok(executionId, 'needs the earlier tests');
  const check = async (headers, expectOk, what, query = '') => {
    const raw = await rawWithHeaders(headers, { query });
    try {
      if (query) raw.send({ method: 'connectionParams', data: { sessionBadAI: tokens.bob } });
      const msg = await rawCall(raw, 1, 'query', 'getExecutionDetails', { executionId });
      if (expectOk) {
        assert.ok(msg.result, `${what}: ${JSON.stringify(msg)}`);
        assert.equal(msg.result.type, 'data');
        assert.equal(msg.result.data.json.id, executionId, what);
        assert.equal(msg.result.data.json.ownerId, 'alice', what);
      } else {
        assertErrorShape(rawError(msg), { code: 'FORBIDDEN', path: 'getExecutionDetails' }, what);
      }
    } finally {
      raw.close();
    }
  };
  await check({ cookie: `session=${tokens.alice}` }, true, 'alice cookie');
  await check({ cookie: `theme=dark; session=${tokens.alice}; other=1` }, true, 'cookie among others');
  await check({ cookie: `session=${tokens.bob}` }, false, 'bob cookie');
  await check({ authorization: `Bearer ${tokens.alice}` }, true, 'alice bearer');
  await check({ cookie: `session=${tokens.admin}` }, true, 'admin cookie');
  // connectionParams.sessionBadAI comes first: bob's token there beats alice's cookie
  await check({ cookie: `session=${tokens.alice}` }, false, 'connectionParams before cookie', '?connectionParams=1');

  // no token at all on a raw socket: the guard answers UNAUTHORIZED
  const raw = await rawWithHeaders({});
  const msg = await rawCall(raw, 1, 'query', 'getExecutionDetails', { executionId });
  assertErrorShape(rawError(msg), { code: 'UNAUTHORIZED', message: 'UNAUTHORIZED' });
  raw.close();
});

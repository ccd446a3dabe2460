// flows.* (flow CRUD with optimistic versions) and nodes.list (the node registry) through the
// official client.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { REPO, gatewayFixture, makeClient } from '../lib/gateway.mjs';
import { assertClientError, rejection } from '../lib/expect.mjs';

let c;
gatewayFixture({
  setup: (gw) => {
    c = makeClient({ url: gw.url });
  },
  teardown: () => c?.close(),
});

const DOC = {
  name: 'Greeting',
  nodes: [
    { id: 'name', type: 'TextNode', values: { text: 'Ada' } },
    {
      id: 'greeting',
      type: 'HandlebarsTemplateNode',
      values: { template: 'Hi {{name}}', variables: { name: '' } },
    },
  ],
  edges: [{ from: 'name.text', to: 'greeting.variables.name' }],
};

function assertSummary(s, { name, version }) {
  assert.deepStrictEqual(Object.keys(s).sort(), ['createdAt', 'id', 'name', 'ownerId', 'updatedAt', 'version']);
  assert.match(s.id, /^V2[A-Za-z0-9]{24}$/, `flow id format: ${s.id}`);
  assert.equal(s.name, name);
  assert.equal(s.version, version);
  assert.equal(s.ownerId, 'dev:admin', 'auth disabled: the owner is dev:admin');
  assert.ok(s.createdAt instanceof Date, 'createdAt is a Date');
  assert.ok(s.updatedAt instanceof Date, 'updatedAt is a Date');
  assert.ok(s.updatedAt >= s.createdAt);
}

let flow;

test('flows.create returns a summary; flows.get returns it with the canonical document', async () => {
  flow = await c.client.flows.create.mutate({ flow: DOC });
  assertSummary(flow, { name: 'Greeting', version: 1 });
  const got = await c.client.flows.get.query({ flowId: flow.id });
  const { flow: doc, ...summary } = got;
  assert.deepStrictEqual(summary, flow);
  assert.equal(doc.name, 'Greeting');
  assert.deepStrictEqual(
    doc.nodes.map((n) => [n.id, n.type, n.values]),
    DOC.nodes.map((n) => [n.id, n.type, n.values]),
  );
  assert.deepStrictEqual(
    doc.edges.map((e) => [e.from, e.to]),
    DOC.edges.map((e) => [e.from, e.to]),
  );
});

test('flows.create accepts the YAML text of examples/flows/hello.yaml', async () => {
  const text = fs.readFileSync(path.join(REPO, 'examples', 'flows', 'hello.yaml'), 'utf8');
  const rec = await c.client.flows.create.mutate({ flow: text });
  assertSummary(rec, { name: 'Hello', version: 1 });
  const { flow: doc } = await c.client.flows.get.query({ flowId: rec.id });
  assert.deepStrictEqual(
    doc.nodes.map((n) => n.id),
    ['name', 'greeting', 'log'],
  );
});

test('flows.list pages with limit/after and nextCursor', async () => {
  const extra = [];
  for (const name of ['L1', 'L2', 'L3']) {
    extra.push((await c.client.flows.create.mutate({ flow: { ...DOC, name } })).id);
  }
  const all = await c.client.flows.list.query({ limit: 500 });
  assert.deepStrictEqual(Object.keys(all).sort(), ['items', 'nextCursor']);
  assert.equal(all.nextCursor, null);
  const ids = all.items.map((i) => i.id);
  for (const id of [flow.id, ...extra]) assert.ok(ids.includes(id), `${id} listed`);
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  for (const item of all.items) assert.ok(item.createdAt instanceof Date && typeof item.version === 'number');

  const paged = [];
  let after;
  for (let guard = 0; guard < 100; guard++) {
    const page = await c.client.flows.list.query(after ? { limit: 2, after } : { limit: 2 });
    assert.ok(page.items.length <= 2);
    paged.push(...page.items.map((i) => i.id));
    if (!page.nextCursor) break;
    after = page.nextCursor;
  }
  assert.deepStrictEqual(paged, ids, 'pages concatenate to the full list, same order');
  assertClientError(await rejection(c.client.flows.list.query({ limit: 0 })), {
    code: 'BAD_REQUEST',
    path: 'flows.list',
  });
});

test('flows.update bumps the version; a stale expectedVersion → CONFLICT (-32009)', async () => {
  const v2 = await c.client.flows.update.mutate({
    flowId: flow.id,
    flow: { ...DOC, name: 'Greeting v2' },
    expectedVersion: 1,
  });
  assertSummary(v2, { name: 'Greeting v2', version: 2 });
  assert.equal(v2.id, flow.id);
  assert.equal(v2.createdAt.getTime(), flow.createdAt.getTime());
  assert.ok(v2.updatedAt >= flow.updatedAt);

  const err = await rejection(
    c.client.flows.update.mutate({ flowId: flow.id, flow: { ...DOC, name: 'lost update' }, expectedVersion: 1 }),
  );
  assertClientError(err, { code: 'CONFLICT', path: 'flows.update' });
  assert.equal(err.shape.code, -32009);
  const still = await c.client.flows.get.query({ flowId: flow.id });
  assert.equal(still.version, 2);
  assert.equal(still.flow.name, 'Greeting v2', 'the conflicting update changed nothing');

  const v3 = await c.client.flows.update.mutate({ flowId: flow.id, flow: { ...DOC, name: 'Greeting v3' } });
  assert.equal(v3.version, 3, 'without expectedVersion the update is unconditional');

  assertClientError(
    await rejection(c.client.flows.update.mutate({ flowId: 'V2doesNotExist', flow: DOC, expectedVersion: 1 })),
    { code: 'NOT_FOUND', path: 'flows.update' },
  );
});

test('invalid documents → BAD_REQUEST naming the bad node / port', async () => {
  const cases = [
    {
      doc: { name: 'bad', nodes: [{ id: 'q', type: 'NoSuchNode' }], edges: [] },
      mentions: ["'q'", 'NoSuchNode'],
    },
    {
      doc: {
        name: 'bad',
        nodes: [
          { id: 't', type: 'TextNode' },
          { id: 'l', type: 'DebugLogNode' },
        ],
        edges: [{ from: 't.nope', to: 'l.message' }],
      },
      mentions: ["'t'", "'nope'"],
    },
    {
      doc: {
        name: 'bad',
        nodes: [
          { id: 't', type: 'TextNode' },
          { id: 'l', type: 'DebugLogNode' },
        ],
        edges: [{ from: 't.text', to: 'missing.message' }],
      },
      mentions: ['missing'],
    },
    {
      doc: { name: 'bad', nodes: [{ id: 't', type: 'TextNode', values: { text: 5 } }], edges: [] },
      mentions: ["'t'", "'text'"],
    },
    {
      doc: {
        name: 'bad',
        nodes: [
          { id: 'a', type: 'TextNode' },
          { id: 'a', type: 'TextNode' },
        ],
        edges: [],
      },
      mentions: ["'a'"],
    },
  ];
  for (const { doc, mentions } of cases) {
    const err = await rejection(c.client.flows.create.mutate({ flow: doc }));
    assertClientError(err, { code: 'BAD_REQUEST', path: 'flows.create' });
    for (const m of mentions) {
      assert.ok(err.message.includes(m), `message should name ${m}: ${err.message}`);
    }
  }
  assertClientError(await rejection(c.client.flows.create.mutate({ flow: 42 })), {
    code: 'BAD_REQUEST',
    path: 'flows.create',
  });
  // an invalid update leaves the flow alone
  const before = await c.client.flows.get.query({ flowId: flow.id });
  const err = await rejection(
    c.client.flows.update.mutate({ flowId: flow.id, flow: cases[0].doc, expectedVersion: before.version }),
  );
  assertClientError(err, { code: 'BAD_REQUEST', path: 'flows.update' });
  assert.match(err.message, /NoSuchNode/);
  assert.equal((await c.client.flows.get.query({ flowId: flow.id })).version, before.version);
});

test('flows.delete: gone from get/list, executions of it cannot be created', async () => {
  const victim = await c.client.flows.create.mutate({ flow: { ...DOC, name: 'to delete' } });
  assert.deepStrictEqual(await c.client.flows.delete.mutate({ flowId: victim.id }), { success: true });
  assertClientError(await rejection(c.client.flows.get.query({ flowId: victim.id })), {
    code: 'NOT_FOUND',
    message: `Flow with id ${victim.id} not found`,
    path: 'flows.get',
  });
  assertClientError(await rejection(c.client.flows.delete.mutate({ flowId: victim.id })), {
    code: 'NOT_FOUND',
    path: 'flows.delete',
  });
  const list = await c.client.flows.list.query({ limit: 500 });
  assert.ok(!list.items.some((i) => i.id === victim.id));
  assertClientError(await rejection(c.client.create.mutate({ flowId: victim.id })), {
    code: 'NOT_FOUND',
    message: `Flow with id ${victim.id} not found`,
    path: 'create',
  });
});

test('nodes.list: categories with their node types and port keys', async () => {
  const cats = await c.client.nodes.list.query();
  assert.ok(Array.isArray(cats) && cats.length > 0);
  const types = new Map();
  for (const cat of cats) {
    assert.equal(typeof cat.category, 'string');
    assert.ok(cat.metadata && typeof cat.metadata === 'object');
    assert.equal(cat.metadata.id, cat.category);
    assert.equal(typeof cat.metadata.label, 'string');
    assert.ok(Array.isArray(cat.nodes));
    for (const n of cat.nodes) {
      assert.equal(typeof n.type, 'string');
      assert.equal(n.category, cat.category, `${n.type} is listed under its own category`);
      assert.ok(Array.isArray(n.ports), `${n.type}.ports`);
      for (const p of n.ports) assert.equal(typeof p.key, 'string', `${n.type}: port key`);
      assert.ok(!types.has(n.type), `${n.type} listed once`);
      types.set(n.type, n);
    }
  }
  const orders = cats.map((cat) => cat.metadata.order);
  for (let i = 1; i < orders.length; i++) {
    assert.ok(orders[i] >= orders[i - 1], `categories sorted by order: ${orders}`);
  }
  const text = types.get('TextNode');
  assert.ok(text, 'TextNode is listed');
  assert.ok(
    text.ports.some((p) => p.key === 'text'),
    `TextNode has port 'text': ${text.ports.map((p) => p.key)}`,
  );
  for (const [type, key] of [
    ['HandlebarsTemplateNode', 'renderedText'],
    ['SleepNode', 'duration'],
    ['DebugLogNode', 'message'],
    ['EventEmitterNode', 'eventName'],
  ]) {
    assert.ok(types.get(type)?.ports.some((p) => p.key === key), `${type} has port '${key}'`);
  }
});

// The deployment stack on this host, exactly as the container runs it: docker/entrypoint.sh with a
// temporary PREFIX renders the nginx and supervisord configs and execs supervisord, which runs nginx,
// 3 gateway processes (role api) and 2 workers in distributed mode on the real PostgreSQL + Kafka.
// Everything below goes through nginx:
//   * /nginx-health (nginx itself), /health, /ready, /metrics (a real gateway; gzip);
//   * the official @trpc/client runs a flow end to end via ws://…/trpc and via ws://…/ ;
//   * ip_hash: clients from different loopback addresses (127.0.X.1) land on different gateways
//     (system.info instanceId), each address always on the same one;
//   * kill -9 of one gateway (pid from `supervisorctl pid`): supervisord restarts it, its clients
//     reconnect through nginx and their tracked system.ticks streams go on with no gap and no repeat;
//   * SIGTERM to the stack: every client gets {"id":null,"method":"reconnect"}, and the whole stack
//     exits cleanly within the stop timeout.
//
// Needs DATABASE_URL, KAFKA_BROKERS, nginx and supervisor + superlance (in .venv); skipped otherwise.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, test } from 'node:test';

import { makeChainGraphClient, TERMINAL_TYPES, watchExecution } from '../lib/chaingraph-client.mjs';
import {
  alive,
  deployPrerequisites,
  makeClientFrom,
  openRawFrom,
  portOpen,
  startStack,
} from '../lib/deploy.mjs';
import { until, withTimeout } from '../lib/gateway.mjs';
import { deleteTopics } from '../lib/kafka-cleanup.mjs';

const { DATABASE_URL, KAFKA_BROKERS } = process.env;
const { skip } = deployPrerequisites();
const DRAIN_SECONDS = 2;
const STOP_GRACE_SECONDS = 10; // entrypoint default: stopwaitsecs = drain + this

const HELLO = {
  name: 'hello through nginx',
  nodes: [
    { id: 'name', type: 'TextNode', values: { text: 'nginx' } },
    { id: 'greet', type: 'HandlebarsTemplateNode', values: { template: 'Hello, {{name}}!', variables: { name: '' } } },
  ],
  edges: [{ from: 'name.text', to: 'greet.variables.name' }],
};

let stack;
const clients = [];
const raws = [];
/** source address -> instanceId, filled by the ip_hash test and used by the later ones */
const routing = new Map();

function track(c) {
  clients.push(c);
  return c;
}

const topicPrefix = `deploy-${crypto.randomBytes(4).toString('hex')}.`;

before(async () => {
  if (skip) return;
  stack = await startStack({
    instances: 3,
    workers: 2,
    env: {
      EXECUTION_MODE: 'distributed',
      DATABASE_URL,
      KAFKA_BROKERS,
      KAFKA_TOPICS_PREFIX: topicPrefix,
      AUTH_ENABLED: 'false',
      CHAINGRAPH_DRAIN_SECONDS: String(DRAIN_SECONDS),
      LB_METHOD: 'ip_hash',
    },
  });
});

after(async () => {
  for (const r of raws) r.close();
  for (const c of clients) await c.close().catch(() => null);
  if (stack) {
    await stack.stop(20_000);
    stack.removePrefix();
    deleteTopics(KAFKA_BROKERS, topicPrefix);
  }
});

function fail(message) {
  return `${message}\n--- stack log (tail) ---\n${stack?.log.slice(-6000)}`;
}

test('nginx answers /nginx-health; /health, /ready and /metrics reach a gateway', { skip }, async () => {
  const nh = await stack.get('/nginx-health');
  assert.equal(nh.status, 200);
  assert.match(nh.body, /nginx is healthy/);

  const health = await stack.get('/health');
  assert.equal(health.status, 200, fail('/health through nginx'));
  assert.equal(JSON.parse(health.body).status, 'healthy');

  const ready = await stack.get('/ready');
  assert.equal(ready.status, 200, fail(`/ready through nginx: ${ready.body}`));
  assert.deepEqual(JSON.parse(ready.body).checks, { postgres: 'ok', kafka: 'ok' });

  // loopback is a private address: allowed; compressed for a client that accepts gzip
  const metrics = await stack.get('/metrics', { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(metrics.status, 200);
  assert.equal(metrics.headers['content-encoding'], 'gzip', 'metrics are gzip-compressed by nginx');
  assert.match(metrics.body, /chaingraph_ws_connections/);
  for (const p of ['/metrics/gateway-2', '/metrics/worker-1']) {
    assert.equal((await stack.get(p)).status, 200, p);
  }

  // supervisorctl works over the unix socket under PREFIX and names every process
  const status = stack.status();
  for (const name of ['nginx', 'gateways:gateway-0', 'gateways:gateway-1', 'gateways:gateway-2',
    'workers:worker-0', 'workers:worker-1', 'memmon', 'fatal']) {
    assert.ok(['RUNNING', 'STARTING'].includes(status[name]?.state), `${name}: ${JSON.stringify(status[name])}`);
  }
});

for (const wsPath of ['/trpc', '/']) {
  test(`the official client runs a flow end to end via ws://…${wsPath}`, { skip }, async () => {
    const c = track(makeChainGraphClient({ url: stack.url(wsPath) }));
    const info = await withTimeout(c.client.system.info.query(), 10_000, 'system.info');
    assert.equal(info.role, 'api');
    assert.equal(info.mode, 'distributed');
    const flow = await c.client.flows.create.mutate({ flow: HELLO });
    const { executionId } = await c.client.create.mutate({ flowId: flow.id });
    const watch = watchExecution(c.client, { executionId, fromIndex: 0, eventTypes: [] });
    await withTimeout(watch.startedP, 10_000, 'subscription started');
    await c.client.start.mutate({ executionId });
    await watch.waitFor((e) => TERMINAL_TYPES.has(e.type), { timeoutMs: 20_000, what: 'terminal event' });
    watch.unsubscribe();
    assert.equal(watch.events.at(-1).type, 'flow:completed', fail(`events: ${watch.events.map((e) => e.type)}`));
    const idx = watch.events.map((e) => e.index);
    assert.deepEqual(idx, [...idx.keys()], 'event indexes 0..n-1');
    const greet = watch.events.find((e) => e.type === 'node:completed' && e.data.node.id === 'greet');
    assert.equal(greet.data.node.value('renderedText'), 'Hello, nginx!');
    const row = await c.client.getExecutionDetails.query({ executionId });
    assert.equal(row.status, 'completed');
    assert.match(String(row.processingWorkerId ?? 'released'), /released|^w\d+-/, 'ran on a worker process');
  });
}

test('ip_hash: different source addresses land on different gateways, each always on the same', { skip }, async () => {
  const addresses = Array.from({ length: 12 }, (_, i) => `127.0.${i + 1}.1`);
  for (const localAddress of addresses) {
    const seen = [];
    for (let k = 0; k < 2; k++) {
      const c = makeClientFrom({ url: stack.url('/'), localAddress });
      try {
        seen.push((await withTimeout(c.client.system.info.query(), 10_000, `system.info from ${localAddress}`)).instanceId);
      } finally {
        await c.close();
      }
    }
    assert.equal(seen[0], seen[1], `${localAddress} is sticky: ${seen}`);
    routing.set(localAddress, seen[0]);
  }
  const instances = new Set(routing.values());
  assert.equal(instances.size, 3, `all 3 gateways are used: ${JSON.stringify([...routing])}`);
  for (const id of instances) assert.match(id, /-gateway-[0-2]$/, 'instance ids name the supervisord program');
});

test('kill -9 a gateway: supervisord restarts it; its clients resume their tracked ticks through nginx', { skip }, async () => {
  assert.ok(routing.size > 0, 'needs the ip_hash test');
  const byInstance = new Map();
  for (const [addr, id] of routing) byInstance.set(id, [...(byInstance.get(id) ?? []), addr]);
  const [victimId, victimAddrs] = [...byInstance].sort((a, b) => b[1].length - a[1].length)[0];
  const [, otherAddrs] = [...byInstance].find(([id]) => id !== victimId);
  const program = `gateways:${victimId.match(/gateway-\d+$/)[0]}`;

  // two clients on the victim, one elsewhere (must not notice anything)
  const subs = [...victimAddrs.slice(0, 2), otherAddrs[0]].map((localAddress) => {
    const c = track(makeClientFrom({ url: stack.url('/trpc'), localAddress, retryDelayMs: () => 200 }));
    const s = { localAddress, c, ids: [], error: null, victim: localAddress !== otherAddrs[0] };
    c.client.system.ticks.subscribe({ count: 1_000_000, intervalMs: 20 }, {
      onData: (d) => s.ids.push(Number(d.id)),
      onError: (e) => {
        s.error = e;
      },
    });
    return s;
  });
  await until(() => subs.every((s) => s.ids.length >= 10), { timeoutMs: 10_000, what: '10 ticks on every client' });

  const pid = stack.pid(program);
  assert.ok(pid > 0, `supervisorctl pid ${program}`);
  process.kill(pid, 'SIGKILL');
  const mark = subs.map((s) => s.ids.length);

  // supervisord brings it back: a new pid, listening again
  await until(() => {
    const p = stack.pid(program);
    return p > 0 && p !== pid;
  }, { timeoutMs: 15_000, what: `${program} restarted by supervisord` });
  const port = stack.port + Number(program.at(-1));
  await until(async () => (await stack.get('/health')).status === 200 && (await portOpen(port)), {
    timeoutMs: 20_000,
    what: `restarted ${program} listening on ${port}`,
  });
  assert.ok(!alive(pid), 'the killed process is gone');

  // the victim's clients reconnected through nginx and their streams went on
  await until(() => subs.every((s, i) => s.ids.length >= mark[i] + 25), {
    timeoutMs: 20_000,
    what: 'ticks after the kill on every client',
  });
  for (const s of subs) {
    assert.equal(s.error, null, `${s.localAddress}: ${s.error?.message}`);
    assert.deepEqual(s.ids, [...s.ids.keys()], `${s.localAddress}: ids 0..n-1, nothing lost or repeated`);
  }
  for (const s of subs.filter((x) => x.victim)) {
    assert.ok(s.c.sockets.length >= 2, `${s.localAddress} reconnected (sockets: ${s.c.sockets.length})`);
  }
  const control = subs.find((x) => !x.victim);
  assert.equal(control.c.sockets.length, 1, 'a client on another gateway keeps its socket');
  for (const s of subs) await s.c.close();
});

test('SIGTERM: clients get the reconnect notice and the stack exits cleanly in time', { skip }, async (t) => {
  // one raw socket per gateway (through nginx, from an address routed to it) + an official client
  const perInstance = new Map();
  for (const [addr, id] of routing) if (!perInstance.has(id)) perInstance.set(id, addr);
  for (const addr of perInstance.values()) {
    const r = await openRawFrom(stack.url('/'), addr);
    raws.push(r);
    r.send({ id: 1, method: 'query', params: { path: 'system.info', input: { json: null } } });
    await r.waitForJSON((m) => m.id === 1, { what: `system.info from ${addr}` });
  }
  const seenBy = await Promise.all(raws.map(async (r) => {
    const msg = r.json(1)[0];
    return msg.result?.data?.json?.instanceId;
  }));
  assert.equal(new Set(seenBy).size, 3, `a raw socket on every gateway: ${seenBy}`);
  const c = track(makeClientFrom({ url: stack.url('/trpc'), localAddress: '127.0.1.1' }));
  const ids = [];
  c.client.system.ticks.subscribe({ count: 1_000_000, intervalMs: 20 }, { onData: (d) => ids.push(Number(d.id)) });
  await until(() => ids.length >= 5, { timeoutMs: 10_000, what: 'ticks before SIGTERM' });

  const children = Object.values(stack.status()).map((s) => s.pid).filter(Boolean);
  const marks = raws.map((r) => r.frames.length);
  const t0 = Date.now();
  const logMark = stack.log.length;
  stack.signal('SIGTERM');

  for (const [i, r] of raws.entries()) {
    const note = await r.waitFor((f) => f.json?.method === 'reconnect', {
      from: marks[i],
      timeoutMs: 5000,
      what: `reconnect notice on raw socket ${i}`,
    });
    assert.deepEqual(note.json, { id: null, method: 'reconnect' });
  }
  for (const r of raws) r.close(); // let the gateways finish draining early

  // supervisord stops the gateways, then the workers, then nginx, each group within its stopwaitsecs
  // (drain + STOP_GRACE_SECONDS): that is the stack's stop timeout (compose's stop_grace_period covers it).
  const stopWaitMs = (DRAIN_SECONDS + STOP_GRACE_SECONDS) * 1000;
  const stopTimeoutMs = 2 * stopWaitMs + 5000;
  const exit = await stack.waitExit(stopTimeoutMs + 5000);
  assert.ok(exit, fail(`the stack did not exit within ${stopTimeoutMs + 5000} ms of SIGTERM`));
  t.diagnostic(`stack stopped in ${exit.at - t0} ms: ${stack.log.match(/^.* (stopped|waiting for) .*$/gm)?.join(' | ')}`);
  assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, fail('clean exit'));
  assert.ok(exit.at - t0 < stopTimeoutMs, `stopped in ${exit.at - t0} ms`);
  assert.doesNotMatch(stack.log.slice(logMark), /killing .* with SIGKILL/, fail('nothing had to be killed'));
  await c.close();

  // nothing is left behind: processes, listening ports
  for (const pid of children) assert.ok(!alive(pid), `process ${pid} is gone`);
  const ports = [stack.nginxPort, stack.port, stack.port + 1, stack.port + 2, stack.workerPort, stack.workerPort + 1];
  for (const p of ports) assert.equal(await portOpen(p), false, `port ${p} is closed`);
  // the shutdown order: gateways drained before nginx stopped
  const order = ['stopped: gateway-', 'stopped: worker-', 'stopped: nginx'].map((s) => stack.log.lastIndexOf(s));
  assert.ok(order[0] > 0 && order[0] < order[1] && order[1] < order[2], fail(`stop order ${order}`));
});

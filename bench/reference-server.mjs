#!/usr/bin/env node
// Reference tRPC v11 WebSocket server built on the official @trpc/server `ws` adapter.
//
// It serves the same `system` router as the Python gateway (info, echo, ticks) so that
// the conformance suite can be checked against the official implementation and the
// gateway can be benchmarked against it.
//
// Usage:
//   node bench/reference-server.mjs [--port N] [--host H] [other args are ignored]
//   env PORT / HOST are used when the flags are absent (default 127.0.0.1:4100).
// Optional env (mirrors the gateway's names so the conformance suite can drive both):
//   CHAINGRAPH_KEEPALIVE_ENABLED=1|true, CHAINGRAPH_KEEPALIVE_PING_MS, CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS
//     → applyWSSHandler({ keepAlive }); setting PING_MS alone enables it too.
//   REFERENCE_MAX_PAYLOAD_BYTES: inbound message limit (closes with 1009 above it); default ws's 100 MiB.
//   REFERENCE_SHUTDOWN_GRACE_MS (default 1500): on SIGTERM/SIGINT the server broadcasts
//     {"id":null,"method":"reconnect"}, stops listening, keeps serving open sockets for
//     this long (or until they are all closed), then exits.
// HTTP: GET /health → 200 {"status":"ok"}; everything else 404 (tRPC is WS-only here).
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  applyWSSHandler,
  initTRPC,
  superjson,
  tracked,
  WebSocketServer,
  z,
  ZodError,
} from '../conformance/lib/deps.mjs';

function argValue(name) {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === name) return argv[i + 1];
    if (argv[i].startsWith(name + '=')) return argv[i].slice(name.length + 1);
  }
  return undefined;
}

const port = Number(argValue('--port') ?? process.env.PORT ?? 4100);
const host = argValue('--host') ?? process.env.HOST ?? '127.0.0.1';
const truthy = (v) => v != null && /^(1|true|yes|on)$/i.test(v);

const startedAt = new Date();
const instanceId = randomUUID();

const t = initTRPC.create({
  transformer: superjson,
  isDev: false,
  errorFormatter({ shape, error }) {
    return {
      ...shape,
      data: {
        ...shape.data,
        zodError:
          error.code === 'BAD_REQUEST' && error.cause instanceof ZodError
            ? z.flattenError(error.cause)
            : null,
      },
    };
  },
});

const ticksInput = z.object({
  count: z.number().int().min(1).max(1_000_000),
  intervalMs: z.number().int().min(0).default(0),
  lastEventId: z.string().nullish(),
});

export const appRouter = t.router({
  system: t.router({
    info: t.procedure.query(() => ({
      name: 'trpc-reference',
      version: '11.25.2',
      instanceId,
      role: 'reference',
      mode: 'standalone',
      startedAt,
      uptimeSeconds: (Date.now() - startedAt.getTime()) / 1000,
    })),
    echo: t.procedure.input(z.any()).query(({ input }) => input),
    ticks: t.procedure.input(ticksInput).subscription(async function* ({ input, signal }) {
      let start = 0;
      if (input.lastEventId != null) {
        const last = Number.parseInt(input.lastEventId, 10);
        if (Number.isFinite(last)) start = last + 1;
      }
      for (let i = start; i < input.count; i++) {
        if (input.intervalMs > 0 && i > start) {
          await sleep(input.intervalMs, undefined, { signal });
        }
        yield tracked(String(i), { i, at: new Date() });
      }
    }),
  }),
});

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method === 'GET' && (path === '/health' || path === '/healthz')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', name: 'trpc-reference', instanceId }));
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
});

// REFERENCE_MAX_PAYLOAD_BYTES: optional inbound message limit (ws closes with 1009 above it);
// unset = the ws default (100 MiB), i.e. the stock reference behaviour.
const wss = new WebSocketServer({
  server,
  ...(process.env.REFERENCE_MAX_PAYLOAD_BYTES
    ? { maxPayload: Number(process.env.REFERENCE_MAX_PAYLOAD_BYTES) }
    : {}),
});

const keepAliveEnabled =
  truthy(process.env.CHAINGRAPH_KEEPALIVE_ENABLED) ||
  process.env.CHAINGRAPH_KEEPALIVE_PING_MS != null;
const handler = applyWSSHandler({
  wss,
  router: appRouter,
  createContext: () => ({}),
  keepAlive: keepAliveEnabled
    ? {
        enabled: true,
        pingMs: Number(process.env.CHAINGRAPH_KEEPALIVE_PING_MS ?? 30_000),
        pongWaitMs: Number(process.env.CHAINGRAPH_KEEPALIVE_PONG_WAIT_MS ?? 5_000),
      }
    : undefined,
});

let shuttingDown = false;
async function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  console.log(`[reference] ${signal}: broadcasting reconnect, draining`);
  handler.broadcastReconnectNotification();
  server.close(); // stop accepting; existing sockets keep being served
  const graceMs = Number(process.env.REFERENCE_SHUTDOWN_GRACE_MS ?? 1500);
  const deadline = Date.now() + graceMs;
  while (wss.clients.size > 0 && Date.now() < deadline) await sleep(50);
  for (const c of wss.clients) c.terminate();
  wss.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

server.listen(port, host, () => {
  console.log(`[reference] listening on ws://${host}:${port} (pid ${process.pid})`);
});

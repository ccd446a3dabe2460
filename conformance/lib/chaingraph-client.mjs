// A ChainGraph-style executor client, written from the behaviour described in
// /work/shared/docs/chaingraph-executor-spec.md §0/§3/§9 (no ChainGraph code):
//
// * its own SuperJSON instance with the custom transformers a ChainGraph frontend registers
//   before it creates its clients: `ExecutionEventImpl` (events in the current form
//   {index, type, timestamp: ISO, data: {json, meta}}) and `BaseNode` (SerializedNode v2
//   snapshots inside event data);
// * createTRPCClient + wsLink + createWSClient configured like the executor client: a static
//   connectionParams object {sessionBadAI: token ?? ''} (so `?connectionParams=1` and a first
//   connectionParams frame), keepAlive {enabled, intervalMs: 5000, pongTimeoutMs: 3000}, not lazy,
//   default reconnect backoff.
import { createTRPCClient, createWSClient, WebSocket, wsLink } from './deps.mjs';
import { SuperJSON } from 'superjson';
import { closeClient } from './gateway.mjs';

/** The event object the client rebuilds from an `ExecutionEventImpl` custom value. */
export class ExecutionEvent {
  constructor(index, type, timestamp, data) {
    this.index = index;
    this.type = type;
    this.timestamp = timestamp;
    this.data = data;
  }
}

/**
 * A deserialized SerializedNode v2 (what the client's node registry would rebuild). Construction
 * validates the shape the way a real client depends on it: schemaVersion 'v2', `ports` an array of
 * {config: {key}}; anything else throws (the subscription then reports an error, as ChainGraph's
 * client does for a node it cannot rebuild).
 */
export class SerializedNode {
  constructor(raw) {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new Error(`BaseNode: expected an object, got ${JSON.stringify(raw)}`);
    }
    if (raw.schemaVersion !== 'v2') {
      throw new Error(`BaseNode: schemaVersion must be 'v2', got ${JSON.stringify(raw.schemaVersion)}`);
    }
    if (!Array.isArray(raw.ports)) {
      throw new Error(`BaseNode ${raw.id}: ports must be an array`);
    }
    for (const p of raw.ports) {
      if (!p || typeof p !== 'object' || !p.config || typeof p.config.key !== 'string') {
        throw new Error(`BaseNode ${raw.id}: every port needs config.key, got ${JSON.stringify(p)}`);
      }
    }
    if (typeof raw.id !== 'string' || !raw.id) throw new Error('BaseNode: id missing');
    Object.assign(this, raw);
  }

  /** The port entry ({config, value?}) whose config.key is `key`, or undefined. */
  port(key) {
    return this.ports.find((p) => p.config.key === key);
  }

  /** The value of the port with config.key `key` (undefined if absent). */
  value(key) {
    return this.port(key)?.value;
  }

  toJSON() {
    return { ...this };
  }
}

/** A SuperJSON instance with ChainGraph's custom transformers for events and nodes. */
export function makeChainGraphSuperJSON() {
  const sj = new SuperJSON();
  sj.registerCustom(
    {
      isApplicable: (v) => v instanceof SerializedNode,
      serialize: (v) => ({ ...v }),
      deserialize: (v) => new SerializedNode(v),
    },
    'BaseNode',
  );
  sj.registerCustom(
    {
      isApplicable: (v) => v instanceof ExecutionEvent,
      serialize: (v) => ({
        index: v.index,
        type: v.type,
        timestamp: v.timestamp instanceof Date ? v.timestamp.toISOString() : v.timestamp,
        data: sj.serialize(v.data),
      }),
      deserialize: (v) => {
        if (!v || typeof v !== 'object') throw new Error(`ExecutionEventImpl: bad value ${JSON.stringify(v)}`);
        if (typeof v.data !== 'object' || v.data === null || !('json' in v.data)) {
          throw new Error(
            `ExecutionEventImpl: data must be a nested superjson payload object, got ${JSON.stringify(v.data)}`,
          );
        }
        return new ExecutionEvent(v.index, v.type, new Date(v.timestamp), sj.deserialize(v.data));
      },
    },
    'ExecutionEventImpl',
  );
  return sj;
}

export const chaingraphSuperJSON = makeChainGraphSuperJSON();

/**
 * A ChainGraph-configured executor client.
 * @param {object} o
 * @param {string} o.url
 * @param {string} [o.token]        session token (connectionParams.sessionBadAI; '' without one)
 * @param {object} [o.superjson]    defaults to the shared ChainGraph instance
 * @param {object} [o.wsOptions]    extra createWSClient options (onOpen, onClose, onError…)
 * Returns {client, wsClient, superjson, sockets, sent, received, close()}.
 */
export function makeChainGraphClient({ url, token, superjson = chaingraphSuperJSON, wsOptions = {} }) {
  const sockets = [];
  const sent = [];
  const received = [];
  class TrackingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
      this.addEventListener('message', (ev) => received.push(ev.data));
    }
    send(data, ...rest) {
      sent.push(data);
      return super.send(data, ...rest);
    }
  }
  const wsClient = createWSClient({
    url,
    WebSocket: TrackingWebSocket,
    connectionParams: { sessionBadAI: token ?? '' },
    keepAlive: { enabled: true, intervalMs: 5000, pongTimeoutMs: 3000 },
    ...wsOptions,
  });
  const client = createTRPCClient({ links: [wsLink({ client: wsClient, transformer: superjson })] });
  return {
    client,
    wsClient,
    superjson,
    sockets,
    sent,
    received,
    close: () => closeClient(wsClient, sockets),
  };
}

/** All ChainGraph event types the gateway emits (spec §3, plus execution:created / flow:paused / flow:resumed). */
export const EVENT_TYPES = [
  'execution:created',
  'flow:started',
  'flow:completed',
  'flow:failed',
  'flow:cancelled',
  'flow:paused',
  'flow:resumed',
  'node:started',
  'node:completed',
  'node:failed',
  'node:skipped',
  'node:status-changed',
  'node:debug-log-string',
  'edge:transfer-completed',
  'edge:transfer-failed',
  'debug:breakpoint-hit',
];

export const TERMINAL_TYPES = new Set(['flow:completed', 'flow:failed', 'flow:cancelled']);

/**
 * Subscribes to `subscribeToExecutionEvents` and records every delivered batch.
 * `rec.batches` are the arrays as delivered, `rec.events` the flattened events.
 * `rec.waitFor(pred)` resolves with the first event matching pred (from any time).
 */
export function watchExecution(client, input, { onBatch } = {}) {
  const rec = {
    batches: [],
    events: [],
    started: 0,
    stopped: 0,
    completed: 0,
    error: null,
    unsubscribe: null,
    _waiters: new Set(),
  };
  let resolveStarted;
  rec.startedP = new Promise((r) => (resolveStarted = r));
  let resolveEnd;
  rec.ended = new Promise((r) => (resolveEnd = r));
  const wake = () => {
    for (const w of rec._waiters) w();
  };
  const handle = client.subscribeToExecutionEvents.subscribe(input, {
    onStarted: () => {
      rec.started++;
      resolveStarted();
    },
    onData: (batch) => {
      rec.batches.push(batch);
      if (Array.isArray(batch)) rec.events.push(...batch);
      onBatch?.(batch, rec);
      wake();
    },
    onError: (e) => {
      rec.error = e;
      resolveEnd('error');
      wake();
    },
    onStopped: () => rec.stopped++,
    onComplete: () => {
      rec.completed++;
      resolveEnd('complete');
      wake();
    },
  });
  rec.unsubscribe = () => handle.unsubscribe();
  rec.types = () => rec.events.map((e) => e.type);
  rec.waitFor = async (pred, { timeoutMs = 5000, what = 'event', from = 0 } = {}) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = rec.events.slice(from).find(pred);
      if (found) return found;
      if (rec.error) throw new Error(`subscription errored while waiting for ${what}: ${rec.error.message}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}; got: ${rec.events
            .map((e) => `${e.index}:${e.type}`)
            .join(' ')}`,
        );
      }
      await new Promise((resolve) => {
        const w = () => {
          clearTimeout(t);
          rec._waiters.delete(w);
          resolve();
        };
        const t = setTimeout(w, left);
        rec._waiters.add(w);
      });
    }
  };
  rec.waitType = (type, opts = {}) => rec.waitFor((e) => e.type === type, { what: type, ...opts });
  rec.waitTerminal = (opts = {}) =>
    rec.waitFor((e) => TERMINAL_TYPES.has(e.type), { what: 'terminal event', ...opts });
  return rec;
}

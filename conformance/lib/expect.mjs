// Assertion helpers shared by the conformance tests.
import assert from 'node:assert/strict';
import { TRPCClientError } from './deps.mjs';

/** data.code → [JSON-RPC code, httpStatus] (protocol doc §4.2). */
export const CODES = {
  PARSE_ERROR: [-32700, 400],
  BAD_REQUEST: [-32600, 400],
  UNAUTHORIZED: [-32001, 401],
  FORBIDDEN: [-32003, 403],
  NOT_FOUND: [-32004, 404],
  METHOD_NOT_SUPPORTED: [-32005, 405],
  TIMEOUT: [-32008, 408],
  CONFLICT: [-32009, 409],
  PAYLOAD_TOO_LARGE: [-32013, 413],
  UNSUPPORTED_MEDIA_TYPE: [-32015, 415],
  TOO_MANY_REQUESTS: [-32029, 429],
  INTERNAL_SERVER_ERROR: [-32603, 500],
};

/**
 * Asserts an error *shape* {message, code, data:{code, httpStatus, path?}} as sent on the wire
 * (already superjson-deserialized).
 */
export function assertErrorShape(shape, { code, message, path } = {}, context = '') {
  assert.ok(shape && typeof shape === 'object', `error shape missing ${context}`);
  const [rpc, http] = CODES[code];
  assert.equal(typeof shape.message, 'string', `error.message must be a string ${context}`);
  assert.equal(shape.code, rpc, `error.code for ${code} ${context}`);
  assert.ok(shape.data && typeof shape.data === 'object', `error.data missing ${context}`);
  assert.equal(shape.data.code, code, `error.data.code ${context}`);
  assert.equal(shape.data.httpStatus, http, `error.data.httpStatus for ${code} ${context}`);
  if (message instanceof RegExp) assert.match(shape.message, message, context);
  else if (message !== undefined) assert.equal(shape.message, message, context);
  if (path !== undefined) assert.equal(shape.data.path, path, `error.data.path ${context}`);
}

/** Asserts a TRPCClientError thrown/emitted by the official client. */
export function assertClientError(err, expected) {
  assert.ok(err instanceof TRPCClientError, `expected TRPCClientError, got ${err?.stack ?? err}`);
  assertErrorShape(err.shape, expected, `(TRPCClientError: ${err.message})`);
  assert.equal(err.message, err.shape.message);
  assert.deepEqual(err.data, err.shape.data);
}

/** Awaits a promise that must reject; returns the rejection. */
export async function rejection(promise) {
  try {
    const value = await promise;
    assert.fail(`expected a rejection, got ${JSON.stringify(value)}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err;
  }
}

// Single place that resolves the npm dependencies installed in conformance/node_modules.
// bench/ scripts import from here (ESM resolves bare specifiers relative to the importing
// file, so importing this module from anywhere uses conformance/node_modules).
export { createTRPCClient, createWSClient, wsLink, TRPCClientError } from '@trpc/client';
export { initTRPC, TRPCError, tracked } from '@trpc/server';
export { applyWSSHandler } from '@trpc/server/adapters/ws';
export { default as superjson } from 'superjson';
export { WebSocket, WebSocketServer } from 'ws';
export { z, ZodError } from 'zod';

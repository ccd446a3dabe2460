-- chaingraph-gw PostgreSQL schema, version 1.
--
-- Flows, executions and the append-only event log, as in the embedded SQLite store.  Table and
-- column names/types follow ChainGraph's tables where they overlap (chaingraph_flows,
-- chaingraph_executions: the @960 ExecutionRow plus the @HEAD failure/processing columns).
-- Differences, on purpose:
--   * every timestamp is timestamptz (ChainGraph: timestamp without time zone), millisecond
--     precision, UTC;
--   * options / integration / external_events and event data hold the superjson payload
--     ({"json": ..., "meta": ...}) so dates, undefined, Maps... survive; a payload whose JSON
--     text contains \u0000 (which jsonb cannot hold) is stored as a jsonb *string* holding that
--     JSON text (the store decodes both forms);
--   * chaingraph_flows has a name column;
--   * the processing lease lives on the execution row (lease_expires_at, next to ChainGraph's
--     processing_worker_id / processing_started_at) instead of a chaingraph_execution_claims
--     table: claim / renew / release are single-row atomic UPDATEs that can also check the
--     status (terminal executions can't be claimed), and get() returns the lease with the row.
-- This file runs in one transaction under the migration advisory lock; never edit it once
-- released: add 0002_*.sql instead.

CREATE TABLE chaingraph_flows (
    id          text PRIMARY KEY,
    data        jsonb NOT NULL,
    name        text NOT NULL DEFAULT '',
    owner_id    text NOT NULL,
    parent_id   text,
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- list(): ORDER BY created_at DESC, id ASC, optionally per owner, keyset cursor (created_at, id)
CREATE INDEX chaingraph_flows_created_idx ON chaingraph_flows (created_at DESC, id);
CREATE INDEX chaingraph_flows_owner_created_idx ON chaingraph_flows (owner_id, created_at DESC, id);

-- fillfactor 90: lease renewals (every few seconds per running execution) touch no indexed
-- column, so they can stay HOT updates when the page has room.
CREATE TABLE chaingraph_executions (
    id                    text PRIMARY KEY,
    flow_id               text NOT NULL,
    owner_id              text NOT NULL,
    root_execution_id     text,
    parent_execution_id   text,
    status                text NOT NULL DEFAULT 'created',
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    completed_at          timestamptz,
    error_message         text,
    error_node_id         text,
    execution_depth       integer NOT NULL DEFAULT 0,
    options               jsonb,
    integration           jsonb,
    external_events       jsonb,
    failure_count         integer NOT NULL DEFAULT 0,
    last_failure_reason   text,
    last_failure_at       timestamptz,
    processing_started_at timestamptz,
    processing_worker_id  text,
    lease_expires_at      timestamptz
) WITH (fillfactor = 90);

-- ChainGraph's indexes, each extended with the columns our queries order by (a composite index
-- also serves its leading column alone, so ChainGraph's separate flow_id index is covered by
-- the first one):
-- roots(): flow_id = ? AND execution_depth = 0 [AND created_at < ?] ORDER BY created_at DESC, id DESC
CREATE INDEX chaingraph_executions_flow_depth_created_idx
    ON chaingraph_executions (flow_id, execution_depth, created_at, id);
-- tree() and the roots() aggregate (max(depth), count(*) per root)
CREATE INDEX chaingraph_executions_root_idx
    ON chaingraph_executions (root_execution_id, execution_depth, id);
-- children(): ORDER BY created_at, id
CREATE INDEX chaingraph_executions_parent_idx
    ON chaingraph_executions (parent_execution_id, created_at, id);
-- find_by_status(): recovery scans, oldest first
CREATE INDEX chaingraph_executions_status_idx
    ON chaingraph_executions (status, created_at, id);
CREATE INDEX chaingraph_executions_started_idx
    ON chaingraph_executions (started_at);

-- Append-only: an event is stored once per (execution_id, idx) and never updated.
CREATE TABLE chaingraph_execution_events (
    execution_id text NOT NULL,
    idx          integer NOT NULL CHECK (idx >= 0),
    type         text NOT NULL,
    ts           timestamptz NOT NULL,
    data         jsonb NOT NULL,
    PRIMARY KEY (execution_id, idx)
);

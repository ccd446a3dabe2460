"""Authentication (JWT via connectionParams / Authorization header / cookie) and ownership rules."""

from __future__ import annotations

import asyncio
import time

from chaingraph_gw.api.auth import mint_token

from .api_helpers import (
    POSTGRES_SKIP,
    SECRET,
    ApiTestCase,
    RawClient,
    TRPCClient,
    TRPCClientError,
    collect_events,
    create_execution,
    create_flow,
    details,
    emitter_flow,
    next_batch,
    sj_input,
    sleep_chain_flow,
    text_log_flow,
    token,
    wait_status,
)
from .helpers import async_test, deferred_from

NO_FLOW = "User does not own the flow"
NO_ACCESS = "User does not have access to this flow"
EXEC_MUTATIONS = ("start", "stop", "pause", "resume", "step")
EXEC_QUERIES = ("getExecutionDetails", "getExecutionsTree")
EXEC_SUBSCRIPTIONS = ("subscribeToExecutionEvents", "executionEvents")


def _error_code(frame: dict) -> str:
    err = frame["error"]
    shape = err.get("json", err)
    return shape["data"]["code"]


def _error_message(frame: dict) -> str:
    err = frame["error"]
    return err.get("json", err)["message"]


class AnonymousTests(ApiTestCase):
    auth_enabled = True

    @async_test
    async def test_missing_token_is_unauthorized_on_authed_procedures(self) -> None:
        h = await self.start_gateway()
        owner = await self.client(h, token=token("alice"))
        fid = await create_flow(owner, text_log_flow())
        eid = await create_execution(owner, fid)

        anon = await self.client(h)
        checks = [
            anon.mutation("create", {"flowId": fid}),
            anon.query("getRootExecutions", {"flowId": fid}),
            anon.mutation("flows.create", {"flow": text_log_flow()}),
            anon.query("flows.get", {"flowId": fid}),
            anon.query("flows.list", {}),
            anon.mutation("flows.update", {"flowId": fid, "flow": text_log_flow()}),
            anon.mutation("flows.delete", {"flowId": fid}),
        ]
        checks += [anon.mutation(p, {"executionId": eid}) for p in EXEC_MUTATIONS]
        checks += [anon.query(p, {"executionId": eid}) for p in EXEC_QUERIES]
        checks += [next_batch(anon.subscribe(p, {"executionId": eid})) for p in EXEC_SUBSCRIPTIONS]
        for i, call in enumerate(checks):
            with self.subTest(i=i):
                await self.assert_trpc_error(call, "UNAUTHORIZED")
        # No change happened, and the anonymous connection itself is still usable.
        self.assertEqual((await details(owner, eid))["status"], "created")
        self.assertEqual((await owner.query("flows.get", {"flowId": fid}))["version"], 1)
        self.assertIn("instanceId", await anon.query("system.info"))

    @async_test
    async def test_an_empty_token_is_no_token(self) -> None:
        h = await self.start_gateway()
        anon = await self.client(h, connection_params={"sessionBadAI": ""})
        await self.assert_trpc_error(anon.query("flows.list", {}), "UNAUTHORIZED", "UNAUTHORIZED")

    @async_test
    async def test_authentication_is_checked_before_the_execution_id(self) -> None:
        h = await self.start_gateway()
        anon = await self.client(h)
        # ChainGraph's executionContextProcedure is built on authedProcedure: an anonymous caller
        # gets UNAUTHORIZED whatever the input.
        for path in EXEC_QUERIES:
            with self.subTest(path=path):
                await self.assert_trpc_error(anon.query(path, {}), "UNAUTHORIZED")
        await self.assert_trpc_error(anon.mutation("start", {}), "UNAUTHORIZED")


class TokenTransportTests(ApiTestCase):
    auth_enabled = True

    @async_test
    async def test_a_valid_token_is_accepted_from_each_source(self) -> None:
        h = await self.start_gateway()
        for via in ("params", "header", "cookie"):
            with self.subTest(via=via):
                c = await self.client(h, token=token(f"user-{via}"), via=via)
                out = await c.mutation("flows.create", {"flow": text_log_flow()})
                self.assertEqual(out["ownerId"], f"user-{via}")

    @async_test
    async def test_connection_params_win_over_header_and_cookie(self) -> None:
        h = await self.start_gateway()
        c = TRPCClient(h.url, connection_params={"sessionBadAI": token("from-params")},
                       headers={"Authorization": f"Bearer {token('from-header')}",
                                "Cookie": f"session={token('from-cookie')}"})
        await c.connect()
        self.addCleanup(lambda: deferred_from(c.close()))
        self.assertEqual((await c.mutation("flows.create", {"flow": text_log_flow()}))["ownerId"], "from-params")

        c2 = TRPCClient(h.url, headers={"Authorization": f"Bearer {token('from-header')}",
                                        "Cookie": f"session={token('from-cookie')}"})
        await c2.connect()
        self.addCleanup(lambda: deferred_from(c2.close()))
        self.assertEqual((await c2.mutation("flows.create", {"flow": text_log_flow()}))["ownerId"], "from-header")

    async def _bad_token_via_params(self, h, tok: str) -> RawClient:  # type: ignore[no-untyped-def]
        raw = RawClient(h.url + "?connectionParams=1")
        await raw.connect(
            {"method": "connectionParams", "data": {"sessionBadAI": tok}},
            {"id": 1, "method": "query", "params": {"path": "flows.list", "input": sj_input({})}},
        )
        self.addCleanup(lambda: deferred_from(raw.close()))
        await asyncio.wait_for(asyncio.shield(raw.closed), 3)  # the server closes the connection
        return raw

    @async_test
    async def test_a_bad_token_in_connection_params_fails_the_connection(self) -> None:
        h = await self.start_gateway()
        cases = {
            "wrong signature": (mint_token("other-secret", user_id="alice", role="user", ttl_seconds=60),
                                "invalid token signature"),
            "expired": (mint_token(SECRET, user_id="alice", role="user", ttl_seconds=60,
                                   now=time.time() - 3600), "token expired"),
            "malformed": ("not-a-jwt", "malformed token"),
        }
        for label, (tok, why) in cases.items():
            with self.subTest(label):
                raw = await self._bad_token_via_params(h, tok)
                ctx_errors = raw.for_id(None)
                self.assertEqual(len(ctx_errors), 1, raw.frames)
                self.assertEqual(_error_code(ctx_errors[0]), "UNAUTHORIZED")
                self.assertIn(why, _error_message(ctx_errors[0]))
                req = raw.for_id(1)
                self.assertEqual(len(req), 1, raw.frames)
                self.assertIn("error", req[0])
                self.assertEqual(_error_code(req[0]), "UNAUTHORIZED")
                self.assertIn(why, _error_message(req[0]))
        # Nothing was served to those connections; a good token still works.
        c = await self.client(h, token=token("alice"))
        self.assertEqual((await c.query("flows.list", {}))["items"], [])

    @async_test
    async def test_a_bad_token_in_header_or_cookie_fails_the_connection(self) -> None:
        h = await self.start_gateway()
        bad = mint_token("other-secret", user_id="alice", role="admin", ttl_seconds=60)
        expired = mint_token(SECRET, user_id="alice", role="admin", ttl_seconds=10, now=time.time() - 100)
        for label, headers in (("header", {"Authorization": f"Bearer {bad}"}),
                               ("cookie", {"Cookie": f"session={expired}"})):
            with self.subTest(label):
                raw = RawClient(h.url, headers=headers)
                await raw.connect(
                    {"id": 1, "method": "mutation", "params": {"path": "flows.create",
                                                               "input": sj_input({"flow": text_log_flow()})}})
                self.addCleanup(
                    lambda r=raw: deferred_from(r.close()))
                await asyncio.wait_for(asyncio.shield(raw.closed), 3)
                ctx_errors = raw.for_id(None)
                self.assertEqual(len(ctx_errors), 1, raw.frames)
                self.assertEqual(_error_code(ctx_errors[0]), "UNAUTHORIZED")
                for frame in raw.for_id(1):  # if the request got an answer at all, it is the same error
                    self.assertEqual(_error_code(frame), "UNAUTHORIZED")
        admin = await self.client(h, token=token("root", "admin"))
        self.assertEqual((await admin.query("flows.list", {}))["items"], [])  # nothing was created

    @async_test
    async def test_a_token_signed_for_another_gateway_with_the_pending_client(self) -> None:
        """The tRPC client sees the context failure as an UNAUTHORIZED error on its request."""
        h = await self.start_gateway()
        c = TRPCClient(h.url, connection_params={"sessionBadAI": mint_token("nope", user_id="x", role="user",
                                                                             ttl_seconds=60)})
        await c.connect()
        self.addCleanup(lambda: deferred_from(c.close()))
        try:
            await asyncio.wait_for(c.query("flows.list", {}), 3)
        except TRPCClientError as exc:
            self.assertEqual(exc.code, "UNAUTHORIZED")
        except Exception as exc:  # the socket may already be closed: that is fine too
            self.assertIn("closed", str(exc))
        else:
            self.fail("a request on a connection with a bad token was served")
        await c.wait_closed()


class OwnershipTests(ApiTestCase):
    auth_enabled = True

    async def _setup(self):  # type: ignore[no-untyped-def]
        h = await self.start_gateway()
        alice = await self.client(h, token=token("alice"))
        bob = await self.client(h, token=token("bob", "user"), via="header")
        admin = await self.client(h, token=token("boss", "admin"), via="cookie")
        return h, alice, bob, admin

    @async_test
    async def test_flows_belong_to_their_creator(self) -> None:
        _h, alice, bob, admin = await self._setup()
        a_flow = await alice.mutation("flows.create", {"flow": text_log_flow(name="alice's")})
        self.assertEqual(a_flow["ownerId"], "alice")
        b_flow = await bob.mutation("flows.create", {"flow": text_log_flow(name="bob's")})
        fid = a_flow["id"]

        await self.assert_trpc_error(bob.query("flows.get", {"flowId": fid}), "FORBIDDEN", NO_FLOW)
        await self.assert_trpc_error(bob.mutation("flows.update", {"flowId": fid, "flow": text_log_flow()}),
                                     "FORBIDDEN", NO_FLOW)
        await self.assert_trpc_error(bob.mutation("flows.delete", {"flowId": fid}), "FORBIDDEN", NO_FLOW)
        self.assertEqual([f["id"] for f in (await bob.query("flows.list", {}))["items"]], [b_flow["id"]])
        self.assertEqual([f["id"] for f in (await alice.query("flows.list", {}))["items"]], [fid])
        # An unknown flow is NOT_FOUND for everyone (not FORBIDDEN).
        await self.assert_trpc_error(bob.query("flows.get", {"flowId": "V2none"}), "NOT_FOUND")

        # Nothing changed.
        got = await alice.query("flows.get", {"flowId": fid})
        self.assertEqual((got["version"], got["name"]), (1, "alice's"))

        # Admin sees and manages everything; ownership stays with the creator.
        self.assertEqual(sorted(f["id"] for f in (await admin.query("flows.list", {}))["items"]),
                         sorted([fid, b_flow["id"]]))
        self.assertEqual((await admin.query("flows.get", {"flowId": fid}))["ownerId"], "alice")
        upd = await admin.mutation("flows.update", {"flowId": fid, "flow": text_log_flow(name="edited")})
        self.assertEqual((upd["version"], upd["ownerId"]), (2, "alice"))
        self.assertEqual(await admin.mutation("flows.delete", {"flowId": b_flow["id"]}), {"success": True})

    @async_test
    async def test_executions_belong_to_the_flow_owner(self) -> None:
        _h, alice, bob, admin = await self._setup()
        fid = await create_flow(alice, sleep_chain_flow(2, 100))
        eid = await create_execution(alice, fid)
        self.assertEqual((await details(alice, eid))["ownerId"], "alice")

        await self.assert_trpc_error(bob.mutation("create", {"flowId": fid}), "FORBIDDEN", NO_FLOW)
        await self.assert_trpc_error(bob.query("getRootExecutions", {"flowId": fid}), "FORBIDDEN", NO_FLOW)
        for path in EXEC_QUERIES:
            with self.subTest(path=path):
                await self.assert_trpc_error(bob.query(path, {"executionId": eid}), "FORBIDDEN", NO_ACCESS)
        for path in EXEC_MUTATIONS:
            with self.subTest(path=path):
                await self.assert_trpc_error(bob.mutation(path, {"executionId": eid}), "FORBIDDEN", NO_ACCESS)
        for path in EXEC_SUBSCRIPTIONS:
            with self.subTest(path=path):
                await self.assert_trpc_error(next_batch(bob.subscribe(path, {"executionId": eid})), "FORBIDDEN",
                                             NO_ACCESS)
        self.assertEqual((await details(alice, eid))["status"], "created")  # bob's start did nothing

        # An execution created by the admin on alice's flow is alice's.
        by_admin = await create_execution(admin, fid)
        row = await details(alice, by_admin)
        self.assertEqual(row["ownerId"], "alice")
        await self.assert_trpc_error(bob.query("getExecutionDetails", {"executionId": by_admin}), "FORBIDDEN",
                                     NO_ACCESS)

        # Alice runs her execution; the admin can watch and control it too.
        await alice.mutation("start", {"executionId": eid})
        await admin.mutation("pause", {"executionId": eid})
        await admin.mutation("resume", {"executionId": eid})
        events = [i["data"] for i in await collect_events(admin, eid)]
        self.assertEqual(events[-1]["type"], "flow:completed")
        self.assertEqual((await details(alice, eid))["status"], "completed")
        roots = await admin.query("getRootExecutions", {"flowId": fid})
        self.assertEqual(sorted(r["execution"]["id"] for r in roots), sorted([eid, by_admin]))
        self.assertEqual(len(await alice.query("getRootExecutions", {"flowId": fid})), 2)

    @async_test
    async def test_unknown_execution_for_a_non_admin_is_not_found(self) -> None:
        _h, _alice, bob, admin = await self._setup()
        x = "EXmissing"
        for path in EXEC_QUERIES:
            with self.subTest(path=path):
                await self.assert_trpc_error(bob.query(path, {"executionId": x}), "NOT_FOUND", "Execution not found")
        for path in EXEC_MUTATIONS:
            with self.subTest(path=path):
                await self.assert_trpc_error(bob.mutation(path, {"executionId": x}), "NOT_FOUND",
                                             "Execution not found")
        # The admin path: start says to create it first; stop/pause/resume are BAD_REQUEST.
        await self.assert_trpc_error(admin.mutation("start", {"executionId": x}), "NOT_FOUND",
                                     f"Execution with id {x} not found, create it first")
        for path in ("stop", "pause", "resume"):
            with self.subTest(admin=path):
                await self.assert_trpc_error(admin.mutation(path, {"executionId": x}), "BAD_REQUEST",
                                             f"Execution with id {x} not found")
        await self.assert_trpc_error(bob.query("getExecutionDetails", {}), "BAD_REQUEST",
                                     "Parameter executionId is required for this procedure")

    @async_test
    async def test_child_executions_follow_the_flow_owner(self) -> None:
        _h, alice, bob, admin = await self._setup()
        fid = await create_flow(alice, emitter_flow())
        root = await create_execution(alice, fid)
        await alice.mutation("start", {"executionId": root})
        deadline = time.monotonic() + 5
        while True:
            tree = await alice.query("getExecutionsTree", {"executionId": root})
            if len(tree) == 2 and tree[1]["execution"]["status"] == "completed":
                break
            self.assertLess(time.monotonic(), deadline, "no child execution")
            await asyncio.sleep(0.02)
        child = tree[1]["id"]
        self.assertEqual(tree[1]["execution"]["ownerId"], "alice")
        self.assertEqual((await details(alice, child))["parentExecutionId"], root)
        await self.assert_trpc_error(bob.query("getExecutionDetails", {"executionId": child}), "FORBIDDEN",
                                     NO_ACCESS)
        await self.assert_trpc_error(bob.query("getExecutionsTree", {"executionId": root}), "FORBIDDEN",
                                     NO_ACCESS)
        self.assertEqual(len(await admin.query("getExecutionsTree", {"executionId": root})), 2)

    @async_test
    async def test_only_admin_is_special(self) -> None:
        h = await self.start_gateway()
        alice = await self.client(h, token=token("alice"))
        fid = await create_flow(alice, text_log_flow())
        for role in ("agent", "guest", "user"):
            with self.subTest(role=role):
                other = await self.client(h, token=token(f"someone-{role}", role))
                await self.assert_trpc_error(other.query("flows.get", {"flowId": fid}), "FORBIDDEN", NO_FLOW)
                await self.assert_trpc_error(other.mutation("create", {"flowId": fid}), "FORBIDDEN", NO_FLOW)
        # The same user id is the same owner whichever way the token arrives.
        again = await self.client(h, token=token("alice"), via="cookie")
        eid = await create_execution(again, fid)
        await again.mutation("start", {"executionId": eid})
        await wait_status(alice, eid, "completed")

    @async_test
    async def test_identity_is_fixed_at_connect_time(self) -> None:
        h = await self.start_gateway()
        if time.time() % 1 > 0.5:  # leave at least half a second before the token expires
            await asyncio.sleep(1 - time.time() % 1)
        iat = int(time.time())
        short = mint_token(SECRET, user_id="alice", role="user", ttl_seconds=1, now=iat)
        c = await self.client(h, token=short)
        fid = await create_flow(c, text_log_flow())
        await asyncio.sleep(max(0.0, iat + 1 - time.time()) + 0.05)
        # The token has expired by now; the connection keeps the session it was opened with ...
        self.assertEqual((await c.query("flows.get", {"flowId": fid}))["ownerId"], "alice")
        # ... while a new connection with it is refused.
        raw = await self._expired_connect(h, short)
        self.assertEqual(_error_code(raw.for_id(None)[0]), "UNAUTHORIZED")

    async def _expired_connect(self, h, tok: str) -> RawClient:  # type: ignore[no-untyped-def]
        raw = RawClient(h.url + "?connectionParams=1")
        await raw.connect({"method": "connectionParams", "data": {"sessionBadAI": tok}})
        self.addCleanup(lambda: deferred_from(raw.close()))
        await asyncio.wait_for(asyncio.shield(raw.closed), 3)
        return raw


class AuthDisabledTests(ApiTestCase):
    auth_enabled = False

    @async_test
    async def test_everyone_is_dev_admin_when_auth_is_off(self) -> None:
        h = await self.start_gateway()
        anon = await self.client(h)
        junk = await self.client(h, token="not-a-token")
        someone = await self.client(h, token=token("alice"), via="header")
        fid = await create_flow(anon, text_log_flow())
        for c in (anon, junk, someone):
            got = await c.query("flows.get", {"flowId": fid})
            self.assertEqual(got["ownerId"], "dev:admin")
        eid = await create_execution(junk, fid)
        self.assertEqual((await details(someone, eid))["ownerId"], "dev:admin")
        self.assertEqual((await someone.mutation("flows.create", {"flow": text_log_flow()}))["ownerId"],
                         "dev:admin")


# -- the same tests against the PostgreSQL store (local mode with DATABASE_URL) ---------------------


class PgAnonymousTests(AnonymousTests):
    backend = "postgres"
    skip = POSTGRES_SKIP


class PgTokenTransportTests(TokenTransportTests):
    backend = "postgres"
    skip = POSTGRES_SKIP


class PgOwnershipTests(OwnershipTests):
    backend = "postgres"
    skip = POSTGRES_SKIP


class PgAuthDisabledTests(AuthDisabledTests):
    backend = "postgres"
    skip = POSTGRES_SKIP

"""The ``chaingraph-gw`` command against a real in-process gateway: run, flows, token, errors."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from chaingraph_gw.api.auth import verify_token
from chaingraph_gw.config import load_settings
from chaingraph_gw.service import make_gateway_service

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "flows"


def async_test(fn):  # type: ignore[no-untyped-def]
    def wrapper(self):  # type: ignore[no-untyped-def]
        return Deferred.fromFuture(asyncio.ensure_future(fn(self)))

    wrapper.__name__ = fn.__name__
    return wrapper


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chaingraph_gw.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})}, cwd=str(REPO),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


class CLIAgainstGatewayTests(unittest.TestCase):
    async def _start(self) -> None:
        settings = load_settings(env={}, overrides={
            "port": 0, "data_dir": self.mktemp(), "auth_enabled": False, "load_examples": False,
        })
        self.root, self.gw = make_gateway_service(settings, with_backend=True)
        self.root.startService()
        listener = self.root.getServiceNamed("listener")
        await listener.listening.asFuture(asyncio.get_running_loop())
        self.url = f"ws://127.0.0.1:{listener.listening_port}"
        self.addCleanup(self.root.stopService)

    @async_test
    async def test_run_prints_outputs_and_exits_zero(self) -> None:
        await self._start()
        code, out, err = await cli("run", str(EXAMPLES / "hello.yaml"), "--url", self.url)
        self.assertEqual(code, 0, err)
        outputs = orjson.loads(out)
        self.assertEqual(outputs["greeting"]["renderedText"], "Hello, Ada! You are 36.")
        self.assertIn("completed in", err)

    @async_test
    async def test_run_watch_prints_every_event(self) -> None:
        await self._start()
        code, out, err = await cli("run", str(EXAMPLES / "math-branch.yaml"), "--url", self.url, "--watch")
        self.assertEqual(code, 0, err)
        lines = [orjson.loads(line) for line in out.splitlines() if line.startswith('{"index"')]
        self.assertEqual([e["index"] for e in lines], list(range(len(lines))))
        self.assertEqual(lines[0]["type"], "execution:created")
        self.assertEqual(lines[-1]["type"], "flow:completed")

    @async_test
    async def test_run_timed_out_flow_exits_one(self) -> None:
        await self._start()
        path = Path(os.path.abspath(self.mktemp() + ".yaml"))
        path.write_text("name: too slow\nnodes:\n  - {id: s, type: SleepNode, values: {duration: 5000}}\n")
        code, _out, err = await cli("run", str(path), "--url", self.url, "--timeout-ms", "300")
        self.assertEqual(code, 1, err)
        self.assertIn("execution failed: Flow execution timed out after 300 ms", err)

    @async_test
    async def test_node_failure_does_not_fail_the_run(self) -> None:
        await self._start()
        path = Path(os.path.abspath(self.mktemp() + ".yaml"))
        path.write_text("name: div0\nnodes:\n  - {id: m, type: MathNode, values: {a: 1, b: 0, operation: divide}}\n")
        code, out, err = await cli("run", str(path), "--url", self.url, "--watch")
        self.assertEqual(code, 0, err)
        failed = [orjson.loads(line) for line in out.splitlines() if '"node:failed"' in line]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["data"]["error"], {"name": "Error", "message": "Division by zero is not allowed"})
        self.assertIn('"flow:completed"', out)

    @async_test
    async def test_flows_import_list_export(self) -> None:
        await self._start()
        code, out, err = await cli("flows", "import", str(EXAMPLES / "hello.yaml"),
                                   str(EXAMPLES / "events.yaml"), "--url", self.url)
        self.assertEqual(code, 0, err)
        ids = [line.split("\t")[0] for line in out.splitlines()]
        self.assertEqual(len(ids), 2)
        self.assertTrue(all(i.startswith("V2") for i in ids))
        code, out, err = await cli("flows", "list", "--url", self.url)
        self.assertEqual(code, 0, err)
        self.assertEqual(sorted(line.split("\t")[0] for line in out.splitlines()), sorted(ids))
        target = os.path.abspath(self.mktemp() + ".json")
        code, out, err = await cli("flows", "export", ids[0], "-o", target, "--url", self.url)
        self.assertEqual(code, 0, err)
        doc = orjson.loads(Path(target).read_text())
        self.assertEqual(doc["name"], "Hello")
        self.assertEqual({n["id"] for n in doc["nodes"]}, {"name", "greeting", "log"})

    @async_test
    async def test_bad_flow_file_is_one_readable_line(self) -> None:
        await self._start()
        path = Path(os.path.abspath(self.mktemp() + ".yaml"))
        path.write_text("name: broken\nnodes:\n  - {id: x, type: NoSuchNode}\n")
        code, out, err = await cli("run", str(path), "--url", self.url)
        self.assertEqual(code, 3)
        self.assertIn("chaingraph-gw: error: BAD_REQUEST", err)
        self.assertIn("NoSuchNode", err)
        self.assertNotIn("Traceback", err)

    @async_test
    async def test_unknown_flow_export_is_not_found(self) -> None:
        await self._start()
        code, _out, err = await cli("flows", "export", "V2nope", "--url", self.url)
        self.assertEqual(code, 3)
        self.assertIn("NOT_FOUND", err)


class CLIWithoutGatewayTests(unittest.TestCase):
    @async_test
    async def test_missing_file(self) -> None:
        code, _out, err = await cli("run", "/nonexistent/flow.yaml", "--url", "ws://127.0.0.1:9")
        self.assertEqual(code, 3)
        self.assertIn("cannot read /nonexistent/flow.yaml", err)
        self.assertNotIn("Traceback", err)

    @async_test
    async def test_unreachable_gateway(self) -> None:
        code, _out, err = await cli("flows", "list", "--url", "ws://127.0.0.1:9")
        self.assertEqual(code, 3)
        self.assertIn("chaingraph-gw: error:", err)
        self.assertNotIn("Traceback", err)

    @async_test
    async def test_token_minting(self) -> None:
        code, out, err = await cli("token", "--user", "alice", "--role", "agent", "--ttl", "2h",
                                   env={"AUTH_JWT_SECRET": "s3cret"})
        self.assertEqual(code, 0, err)
        user = verify_token("s3cret", out.strip())
        self.assertEqual((user.id, user.role), ("alice", "agent"))

    @async_test
    async def test_token_needs_secret_and_valid_ttl(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "AUTH_JWT_SECRET"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chaingraph_gw.cli", "token", "--user", "a",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(REPO))
        _out, err = await proc.communicate()
        self.assertEqual(proc.returncode, 3)
        self.assertIn("AUTH_JWT_SECRET", err.decode())
        code, _out, err2 = await cli("token", "--user", "a", "--ttl", "soon", env={"AUTH_JWT_SECRET": "x"})
        self.assertEqual(code, 3)
        self.assertIn("invalid duration", err2)

    @async_test
    async def test_version(self) -> None:
        code, out, _err = await cli("version")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("chaingraph-gw "))

"""The ``chaingraph-gw`` command.

    chaingraph-gw serve [twistd plugin options]         run the gateway in the foreground
    chaingraph-gw run FLOW_FILE [--url] [--token] [--watch]
    chaingraph-gw flows import FILE... | list | export FLOW_ID [-o FILE]
    chaingraph-gw token --user U --role R --ttl 1h
    chaingraph-gw version

Client commands talk to a running gateway over the WebSocket API. Errors print one readable
line on stderr and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from . import NAME, __version__

DEFAULT_URL = os.environ.get("CHAINGRAPH_URL", "ws://127.0.0.1:4021")
EXIT_OK, EXIT_FAILED, EXIT_CANCELLED, EXIT_ERROR = 0, 1, 2, 3


class CLIError(Exception):
    pass


def _serve(argv: list[str]) -> int:
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "-n", "--pidfile=", NAME, *argv]
    run()
    return 0


def _client(args: argparse.Namespace) -> Any:
    from .client import TRPCClient

    token = args.token or os.environ.get("CHAINGRAPH_TOKEN")
    return TRPCClient(args.url, connection_params={"sessionBadAI": token} if token else {})


def _read_flow(path: str) -> dict[str, Any]:
    from .flow.document import FlowValidationError, parse_flow_text

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_flow_text(text, filename=path)
    except FlowValidationError as exc:
        raise CLIError(str(exc)) from None


def _jsonable(value: Any) -> Any:
    """Plain JSON for printing; errors keep their name and message (JSON.stringify would drop them)."""
    from .trpc.superjson import JSError
    from .trpc.transformer import PlainJSONTransformer

    def readable(v: Any) -> Any:
        if isinstance(v, JSError):
            return {"name": v.name, "message": v.message}
        if isinstance(v, dict):
            return {k: readable(x) for k, x in v.items()}
        if isinstance(v, list):
            return [readable(x) for x in v]
        return v

    return PlainJSONTransformer().encode(readable(value))


def _outputs(node: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for port in node.get("ports", []):
        cfg = port.get("config", {})
        if cfg.get("direction") in ("output", "passthrough") and "value" in port:
            out[cfg.get("key")] = port["value"]
    return out


async def _run_flow(args: argparse.Namespace) -> int:
    from .client import TRPCClientError

    doc = _read_flow(args.flow_file)
    total = len(doc.get("nodes", [])) if isinstance(doc.get("nodes"), list) else 0
    client = await _client(args).connect()
    try:
        flow = await client.mutation("flows.create", {"flow": doc})
        create_input: dict[str, Any] = {"flowId": flow["id"]}
        if args.timeout_ms:
            create_input["options"] = {"execution": {"flowTimeoutMs": args.timeout_ms}}
        created = await client.mutation("create", create_input)
        exec_id = created["executionId"]
        print(f"flow {flow['id']} ({flow['name']}), execution {exec_id}", file=sys.stderr)
        stream = client.subscribe("executionEvents", {"executionId": exec_id})
        started = time.monotonic()
        await client.mutation("start", {"executionId": exec_id})
        done = 0
        current = ""
        outputs: dict[str, Any] = {}
        tty = sys.stderr.isatty()
        result = EXIT_ERROR
        async for item in stream:
            ev = item["data"]
            etype, data = ev["type"], ev["data"]
            if etype == "node:started":
                current = data["node"]["id"]
            elif etype in ("node:completed", "node:failed"):
                done += 1
                node = data["node"]
                if etype == "node:completed":
                    outputs[node["id"]] = _outputs(node)
            elif etype == "node:skipped":
                done += 1
            if args.watch:
                print(orjson.dumps(_jsonable({"index": ev["index"], "type": etype, "data": data})).decode())
            if tty:
                sys.stderr.write(f"\r[{done}/{total}] {current:<30.30} {time.monotonic() - started:7.2f}s")
                sys.stderr.flush()
            if etype == "flow:completed":
                result = EXIT_OK
            elif etype == "flow:failed":
                err = data.get("error")
                msg = getattr(err, "message", None) or (err.get("message") if isinstance(err, dict) else err)
                print(f"\nexecution failed: {msg}", file=sys.stderr)
                result = EXIT_FAILED
            elif etype == "flow:cancelled":
                print(f"\nexecution cancelled: {data.get('reason')}", file=sys.stderr)
                result = EXIT_CANCELLED
        if tty:
            sys.stderr.write("\n")
        print(orjson.dumps(_jsonable(outputs), option=orjson.OPT_INDENT_2).decode())
        print(f"{['completed', 'failed', 'cancelled', 'error'][result]} in {time.monotonic() - started:.2f}s",
              file=sys.stderr)
        return result
    except TRPCClientError as exc:
        raise CLIError(f"{exc.code or 'error'}: {exc}") from None
    finally:
        await client.close()


async def _flows(args: argparse.Namespace) -> int:
    from .client import TRPCClientError

    client = await _client(args).connect()
    try:
        if args.flows_command == "import":
            for path in args.files:
                rec = await client.mutation("flows.create", {"flow": _read_flow(path)})
                print(f"{rec['id']}\t{rec['name']}\t{path}")
        elif args.flows_command == "list":
            after = None
            while True:
                page = await client.query("flows.list", {"limit": 100, **({"after": after} if after else {})})
                for rec in page["items"]:
                    print(f"{rec['id']}\t{rec['name']}\tv{rec['version']}\t{rec['ownerId']}")
                after = page["nextCursor"]
                if not after:
                    break
        elif args.flows_command == "export":
            rec = await client.query("flows.get", {"flowId": args.flow_id})
            text = orjson.dumps(_jsonable(rec["flow"]), option=orjson.OPT_INDENT_2).decode() + "\n"
            if args.output:
                Path(args.output).write_text(text)
            else:
                sys.stdout.write(text)
        return EXIT_OK
    except TRPCClientError as exc:
        raise CLIError(f"{exc.code or 'error'}: {exc}") from None
    finally:
        await client.close()


def _token(args: argparse.Namespace) -> int:
    from .api.auth import mint_token, parse_duration

    secret = args.secret or os.environ.get("AUTH_JWT_SECRET")
    if not secret:
        raise CLIError("no secret: set AUTH_JWT_SECRET or pass --secret")
    try:
        print(mint_token(secret, user_id=args.user, role=args.role, ttl_seconds=parse_duration(args.ttl)))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return EXIT_OK


async def _migrate(args: argparse.Namespace) -> int:
    from .services.postgres_store import PostgresStore

    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        raise CLIError("no database: set DATABASE_URL or pass --database-url")
    from .services.interfaces import StoreUnavailable

    try:
        store = await PostgresStore(url).open()  # migrates under an advisory lock
    except StoreUnavailable as exc:
        raise CLIError(str(exc)) from None
    try:
        from .services.migrations import applied_versions

        async with store._pool.connection() as conn:  # read-only report
            versions = await applied_versions(conn)
        print(f"schema at version {max(versions) if versions else 0} ({store.target})")
    finally:
        await store.close()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=NAME, description="ChainGraph tRPC WebSocket gateway")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="run the gateway in the foreground (options as for twistd chaingraph-gw)",
                   add_help=False)
    sub.add_parser("version", help="print the version")

    def client_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=DEFAULT_URL, help=f"gateway WebSocket URL (default {DEFAULT_URL})")
        p.add_argument("--token", help="session token (default: $CHAINGRAPH_TOKEN)")

    run = sub.add_parser("run", help="create a flow from FLOW_FILE, execute it and print its outputs")
    run.add_argument("flow_file")
    run.add_argument("--watch", action="store_true", help="print every event as a JSON line")
    run.add_argument("--timeout-ms", type=int, help="fail the execution after this long (flowTimeoutMs)")
    client_opts(run)

    flows = sub.add_parser("flows", help="import, list and export flows")
    fsub = flows.add_subparsers(dest="flows_command", metavar="SUBCOMMAND", required=True)
    imp = fsub.add_parser("import", help="create flows from JSON/YAML files")
    imp.add_argument("files", nargs="+")
    client_opts(imp)
    lst = fsub.add_parser("list", help="list your flows")
    client_opts(lst)
    exp = fsub.add_parser("export", help="print a flow's canonical document")
    exp.add_argument("flow_id")
    exp.add_argument("-o", "--output", help="write to this file instead of stdout")
    client_opts(exp)

    mig = sub.add_parser("migrate", help="apply PostgreSQL schema migrations (distributed mode)")
    mig.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")

    tok = sub.add_parser("token", help="mint an HS256 session token")
    tok.add_argument("--user", required=True)
    tok.add_argument("--role", default="user", choices=("admin", "agent", "user", "guest"))
    tok.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    tok.add_argument("--secret", help="signing secret (default: $AUTH_JWT_SECRET)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return _serve(argv[1:])
    from .client import ConnectionClosed

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "version":
            print(f"{NAME} {__version__}")
            return EXIT_OK
        if args.command == "token":
            return _token(args)
        if args.command == "run":
            return asyncio.run(_run_flow(args))
        if args.command == "flows":
            return asyncio.run(_flows(args))
        if args.command == "migrate":
            return asyncio.run(_migrate(args))
    except CLIError as exc:
        print(f"{NAME}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ConnectionClosed as exc:
        print(f"{NAME}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (TimeoutError, OSError, ConnectionError) as exc:
        print(f"{NAME}: error: cannot reach {getattr(args, 'url', '')}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

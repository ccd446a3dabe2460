"""The ``chaingraph-gw`` command: ``serve`` (the gateway) and ``version``; later issues add more."""

from __future__ import annotations

import argparse
import sys

from . import NAME, __version__


def _serve(argv: list[str]) -> int:
    # Same process model as `twistd -n chaingraph-gw ...`, without a pid file.
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "-n", "--pidfile=", NAME, *argv]
    run()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=NAME, description="ChainGraph tRPC WebSocket gateway")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="run the gateway in the foreground (options as for twistd chaingraph-gw)",
                   add_help=False)
    sub.add_parser("version", help="print the version")
    if argv and argv[0] == "serve":
        return _serve(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"{NAME} {__version__}")
        return 0
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

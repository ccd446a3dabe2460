"""Install Twisted's asyncio reactor (psycopg 3 async and confluent_kafka.aio need asyncio)."""

from __future__ import annotations

import sys


def install_asyncio_reactor() -> None:
    """Install AsyncioSelectorReactor unless a reactor is already installed.

    An already-installed asyncio reactor is fine; any other reactor is an error with a clear
    message, because the gateway's backends only run on asyncio.
    """
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        if type(reactor).__name__ != "AsyncioSelectorReactor":
            raise SystemExit(
                f"chaingraph-gw needs the asyncio reactor, but {type(reactor).__name__} is installed; "
                "run twistd with --reactor=asyncio (or without --reactor)"
            )
        return
    from twisted.internet import asyncioreactor

    asyncioreactor.install()

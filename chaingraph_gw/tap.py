"""twistd plugin entry: ``twistd -n chaingraph-gw [options]`` (model: twisted/web/tap.py)."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from .config import ConfigError, load_settings
from .reactor import install_asyncio_reactor


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the chaingraph-gw tRPC WebSocket gateway. Settings come from defaults < YAML config "
        "file < environment < these options; see README.md for every key."
    )
    optParameters = [
        ["host", None, None, "Interface to listen on (env HOST; default 127.0.0.1)."],
        ["port", "p", None, "TCP port for WebSocket and HTTP (env PORT; default 4021).", int],
        ["config", "c", None, "YAML config file (env CHAINGRAPH_CONFIG)."],
        ["role", None, None, "api | worker | all (env CHAINGRAPH_ROLE; default all)."],
        ["mode", None, None, "local | distributed (env EXECUTION_MODE; default local)."],
        ["data-dir", None, None, "Where the embedded default keeps its files (env CHAINGRAPH_DATA_DIR)."],
        ["log-level", None, None, "debug | info | warn | error (env LOG_LEVEL)."],
        ["log-format", None, None, "text | json (env LOG_FORMAT)."],
    ]

    def postOptions(self) -> None:
        overrides: dict[str, Any] = {}
        for opt, key in (("host", "host"), ("port", "port"), ("role", "role"), ("mode", "mode"),
                         ("data-dir", "data_dir"), ("log-level", "log_level"), ("log-format", "log_format")):
            if self[opt] is not None:
                overrides[key] = self[opt]
        try:
            self.settings = load_settings(config_file=self["config"], overrides=overrides)
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None
        install_asyncio_reactor()
        parent = getattr(self, "parent", None)
        if parent is not None and not parent.get("logger"):
            # Structured logs by default (JSON lines when LOG_FORMAT=json) instead of twistd's format.
            from .logs import configure_twistd_logger

            parent["logger"] = configure_twistd_logger(self.settings)


def makeService(options: Options) -> IService:  # twistd's name
    from .service import make_gateway_service

    # The embedded default: the execution API on an in-process backend (SQLite + in-memory bus).
    service, _gateway = make_gateway_service(options.settings, with_backend=True)
    return service

"""chaingraph-gw: a WebSocket tRPC v11 gateway for ChainGraph flow execution."""

__version__ = "0.1.0"
NAME = "chaingraph-gw"

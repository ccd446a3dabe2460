# twistd dropin: makes `twistd chaingraph-gw` available (see chaingraph_gw/tap.py).
from twisted.application.service import ServiceMaker

chaingraph_gw = ServiceMaker(
    "chaingraph-gw",
    "chaingraph_gw.tap",
    "WebSocket tRPC gateway for ChainGraph flow execution",
    "chaingraph-gw",
)

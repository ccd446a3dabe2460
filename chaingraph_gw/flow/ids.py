"""ChainGraph-style random ids: a fixed prefix plus characters of the nanoid ``nolookalikes`` alphabet.

=================  ==========  ====================================
function           prefix      random characters
=================  ==========  ====================================
``flow_id``        ``V2``      24
``execution_id``   ``EX``      24
``event_id``       ``EV``      24
``edge_id``        ``ED``      18
``node_id``        ``NO``      16
``command_id``     ``CMD``     24
``request_id``     ``REQ``     16
``port_id(key)``   ``key:PO``  16 (the @960 port id form)
=================  ==========  ====================================

Randomness comes from :mod:`secrets`; characters are drawn uniformly (rejection sampling).
"""

from __future__ import annotations

import secrets

ALPHABET = "346789ABCDEFGHJKLMNPQRTUVWXYabcdefghijkmnpqrtwxyz"
_N = len(ALPHABET)  # 49
_LIMIT = 256 - 256 % _N  # bytes >= _LIMIT are rejected so that ``b % 49`` is uniform
_TABLE = [ALPHABET[b % _N] for b in range(_LIMIT)]


def random_chars(n: int) -> str:
    """``n`` uniformly random characters of :data:`ALPHABET`."""
    out: list[str] = []
    need = n
    while need > 0:
        for b in secrets.token_bytes(need + 4):
            if b < _LIMIT:
                out.append(_TABLE[b])
                need -= 1
                if not need:
                    break
    return "".join(out)


def flow_id() -> str:
    return "V2" + random_chars(24)


def execution_id() -> str:
    return "EX" + random_chars(24)


def event_id() -> str:
    return "EV" + random_chars(24)


def edge_id() -> str:
    return "ED" + random_chars(18)


def node_id() -> str:
    return "NO" + random_chars(16)


def command_id() -> str:
    return "CMD" + random_chars(24)


def request_id() -> str:
    return "REQ" + random_chars(16)


def port_id(key: str) -> str:
    """A @960-style port id ``<key>:PO<16>`` (@HEAD uses the bare key instead)."""
    return f"{key}:PO" + random_chars(16)


__all__ = [
    "ALPHABET", "command_id", "edge_id", "event_id", "execution_id", "flow_id", "node_id", "port_id",
    "random_chars", "request_id",
]

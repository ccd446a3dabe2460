"""Third-party node packages register through the ``chaingraph_gw.nodes`` entry-point group."""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.trial import unittest

from chaingraph_gw.nodes.sdk import NodeRegistry

PLUGIN = '''
from chaingraph_gw.nodes.sdk import NodeType, string


class ShoutNode(NodeType):
    type_name = "ShoutNode"
    title = "Shout"
    category = "utilities"
    ports = (string("text", default=""), string("result", direction="output", default=""))

    async def execute(self, ctx):
        ctx.values["result"] = ctx.values["text"].upper()


def register_all(registry):
    registry.register(type("WhisperNode", (ShoutNode,), {"type_name": "WhisperNode", "title": "Whisper"}))
'''


class EntryPointTests(unittest.TestCase):
    def test_classes_and_callables_from_an_installed_distribution(self) -> None:
        root = Path(self.mktemp()).resolve()
        (root / "shout_nodes-1.0.dist-info").mkdir(parents=True)
        (root / "shout_nodes.py").write_text(PLUGIN)
        (root / "shout_nodes-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-nodes\nVersion: 1.0\n")
        (root / "shout_nodes-1.0.dist-info" / "entry_points.txt").write_text(
            "[chaingraph_gw.nodes]\nshout = shout_nodes:ShoutNode\nwhisper = shout_nodes:register_all\n"
        )
        sys.path.insert(0, str(root))
        self.addCleanup(sys.path.remove, str(root))
        self.addCleanup(sys.modules.pop, "shout_nodes", None)
        registry = NodeRegistry()
        loaded = registry.load_entry_points()
        self.assertEqual(sorted(n for n in loaded if n in ("shout", "whisper")), ["shout", "whisper"])
        self.assertEqual(registry.get("ShoutNode").title, "Shout")
        self.assertEqual(registry.get("WhisperNode").title, "Whisper")
        listed = [n["type"] for c in registry.categorized() if c["category"] == "utilities" for n in c["nodes"]]
        self.assertIn("ShoutNode", listed)

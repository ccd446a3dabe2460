"""group: a visual container; it has only the system ports and runs after all its children."""

from __future__ import annotations

from ..sdk import NodeContext, NodeType, register


@register
class GroupNode(NodeType):
    type_name = "GroupNode"
    title = "Group"
    category = "group"
    description = "Groups nodes visually"
    tags = ("group", "container")
    ports = ()

    async def execute(self, ctx: NodeContext) -> None:
        return None

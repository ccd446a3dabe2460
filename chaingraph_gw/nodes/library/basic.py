"""basic-values: constant nodes whose value lives on a passthrough port (execute does nothing)."""

from __future__ import annotations

from ..sdk import NodeContext, NodeType, any_port, array, boolean, number, obj, register, string


@register
class TextNode(NodeType):
    type_name = "TextNode"
    title = "Text Node"
    category = "basic-values"
    description = "A text value"
    tags = ("text", "string", "value")
    ports = (string("text", direction="passthrough", default="", title="Text", ui={"isTextArea": True}),)

    async def execute(self, ctx: NodeContext) -> None:
        return None


@register
class NumberNode(NodeType):
    type_name = "NumberNode"
    title = "Number Node"
    category = "basic-values"
    description = "A number value"
    tags = ("number", "value")
    ports = (number("num", direction="passthrough", default=0, title="Number"),)

    async def execute(self, ctx: NodeContext) -> None:
        return None


@register
class BooleanNode(NodeType):
    type_name = "BooleanNode"
    title = "Boolean Node"
    category = "basic-values"
    description = "A boolean value"
    tags = ("boolean", "flag", "value")
    ports = (boolean("flag", direction="passthrough", default=False, title="Flag"),)

    async def execute(self, ctx: NodeContext) -> None:
        return None


@register
class ObjectNode(NodeType):
    type_name = "ObjectNode"
    title = "Object Node"
    category = "basic-values"
    description = "An object with user-defined properties"
    tags = ("object", "value")
    ports = (obj("object", direction="passthrough", default={}, schema=(), is_schema_mutable=True,
                 title="Object", ui={"keyDeletable": True}),)

    async def execute(self, ctx: NodeContext) -> None:
        return None


@register
class ArrayNode(NodeType):
    type_name = "ArrayNode"
    title = "Array Node"
    category = "basic-values"
    description = "An array of values"
    tags = ("array", "list", "value")
    ports = (
        # Editor-only: connecting a typed port here rewrites array.itemConfig. Ignored at runtime.
        any_port("itemSchema", direction="passthrough", title="Item Schema"),
        array("array", direction="passthrough", default=[], item=any_port("item"), is_mutable=True,
              is_schema_mutable=True, title="Array", ui={"allowedTypes": ["string", "number", "boolean"]}),
    )

    async def execute(self, ctx: NodeContext) -> None:
        return None


@register
class MarkdownTextNode(NodeType):
    type_name = "MarkdownTextNode"
    title = "Markdown Text"
    category = "basic-values"
    description = "A markdown text value"
    tags = ("markdown", "text", "value")
    ports = (string("text", direction="passthrough", default="", title="Text",
                    ui={"isTextArea": True, "renderMarkdown": True}),)

    async def execute(self, ctx: NodeContext) -> None:
        return None

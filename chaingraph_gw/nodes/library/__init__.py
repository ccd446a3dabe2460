"""The core ChainGraph node library. Importing this package registers every core type on the default
registry (``chaingraph_gw.nodes.sdk.default_registry``)."""

from __future__ import annotations

from . import basic, data, flow, group, http, math, transforms, utilities  # noqa: F401 - registration

CORE_TYPES: list[str] = [
    # basic-values
    "TextNode", "NumberNode", "BooleanNode", "ObjectNode", "ArrayNode", "MarkdownTextNode",
    # math
    "MathNode", "AndNode", "OrNode", "NotNode", "RandomNode",
    # flow
    "BranchNode", "SwitchNode", "GateNode", "GateNodeV2", "EventEmitterNode", "EventListenerNode", "SleepNode",
    "IsRootExecutionNode",
    # utilities
    "DebugLogNode", "HandlebarsTemplateNode", "LangchainTemplateNode", "RegExpNode", "JSONSerializerNode",
    "YAMLSerializerNode", "JsonYamlDeserializerNode", "ArrayElementNode", "ServerTimeNode", "HttpRequestNode",
    # data
    "ArrayLengthNode", "NumberToStringNode", "TextSearchNode", "StringLengthNode",
    # transforms
    "ObjectKeysNode", "ObjectValuesNode", "ArrayFirstNode", "ArrayLastNode", "ArraySliceNode", "ArrayConcatNode",
    "ArrayReverseNode",
    # group
    "GroupNode",
]

__all__ = ["CORE_TYPES"]

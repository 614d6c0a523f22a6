"""The one exception a tool raises to tell the model what went wrong in its own words."""


class ToolError(Exception):
    """A tool's failure as the sentence the model is sent, as it is (no exception type before it).

    A host tool may raise it (`raise ToolError("That order is not yours.")`); tools from MCP
    servers raise it for whatever their server did (chat/tools/mcp.py).
    """

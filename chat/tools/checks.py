"""`manage.py check` (and runserver's start) says which CHAT_TOOLS entry cannot be offered."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register()
def check_tools(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from chat.tools import _load, configured_paths

    try:
        _load(configured_paths())
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="chat.E012")]
    return []


@checks.register()
def check_mcp_servers(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Each CHAT_MCP_SERVERS entry names a server (its credentials masked), and the SDK is there."""
    from chat.tools.mcp_config import McpConfigError, configured_entries, entry_parse

    errors: list[checks.CheckMessage] = []
    entries = configured_entries()
    for raw in entries:
        try:
            entry_parse(raw)
        except McpConfigError as exc:
            errors.append(checks.Error(str(exc), id="chat.E031"))
    if entries and not _mcp_installed():
        errors.append(
            checks.Error(
                "CHAT_MCP_SERVERS names MCP servers, but the mcp package is not installed: {fix}".format(
                    fix="pip install chat-sse[mcp]"
                ),
                id="chat.E032",
            )
        )
    return errors


def _mcp_installed() -> bool:
    try:
        import mcp  # noqa: F401 - the `mcp` extra
    except ImportError:
        return False
    return True

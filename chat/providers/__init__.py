from chat.providers.base import (
    Finish,
    Prompt,
    Provider,
    ProviderError,
    Reasoning,
    ToolCall,
    ToolSpec,
    Turn,
    Usage,
)

__all__ = [
    "Finish",
    "Prompt",
    "Provider",
    "ProviderError",
    "Reasoning",
    "ToolCall",
    "ToolSpec",
    "Turn",
    "Usage",
]

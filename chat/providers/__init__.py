from chat.providers.base import (
    Attachment,
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
    "Attachment",
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

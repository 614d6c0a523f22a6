from chat.providers.base import Finish, Prompt, Provider, ProviderError, Turn, Usage

__all__ = ["Finish", "Prompt", "Provider", "ProviderError", "Turn", "Usage"]

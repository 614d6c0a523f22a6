"""Which models this server offers, and the provider behind each model id."""

from dataclasses import dataclass
from fnmatch import fnmatchcase

from django.utils.module_loading import import_string

from chat import conf
from chat.errors import Invalid
from chat.providers import catalog
from chat.providers.base import Provider
from chat.providers.limit import limited

BUILTIN_PROVIDERS: dict[str, str] = {
    "demo": "chat.providers.demo.DemoProvider",
    "openai": "chat.providers.openai.OpenAIProvider",
    "anthropic": "chat.providers.anthropic.AnthropicProvider",
}


@dataclass(frozen=True)
class ModelInfo:
    id: str  # as in the API and CHAT_MODELS: `provider:model`, or `demo`
    provider: str
    name: str  # the provider's own model name
    label: str
    vision: bool = True  # it may be sent images (CHAT_VISION_MODELS, CHAT_NO_VISION_MODELS)

    def as_dict(self) -> dict[str, str | bool]:
        return {"id": self.id, "label": self.label, "provider": self.provider, "vision": self.vision}


def parse_model_id(model_id: str) -> ModelInfo:
    provider, _, name = model_id.partition(":")
    name = name or provider
    label = "Demo (offline)" if provider == "demo" else name
    return ModelInfo(id=model_id, provider=provider, name=name, label=label, vision=has_vision(model_id))


def has_vision(model_id: str) -> bool:
    """Whether a model may be sent images: it matches CHAT_VISION_MODELS (every model, unless
    set) and not CHAT_NO_VISION_MODELS; patterns as the shell's (`openai:llama3*`)."""

    def matches(name: str) -> bool:
        patterns = conf.get(name) or []
        if isinstance(patterns, str):
            patterns = [p.strip() for p in patterns.split(",") if p.strip()]
        return any(fnmatchcase(model_id, pattern) for pattern in patterns)

    return matches("CHAT_VISION_MODELS") and not matches("CHAT_NO_VISION_MODELS")


def provider_classes() -> dict[str, str]:
    return {**BUILTIN_PROVIDERS, **conf.get("CHAT_PROVIDERS")}


def available_models() -> list[ModelInfo]:
    known = provider_classes()
    models = [parse_model_id(m) for m in conf.get("CHAT_MODELS") or catalog.model_ids()]
    return [m for m in models if m.provider in known]


def warm_up() -> None:
    """Import the offered models' providers and list their models, so no request waits for it.

    Called once at server start (in a thread): the vendor SDKs take a second to import.
    """
    for name in {m.provider for m in available_models()}:
        import_string(provider_classes()[name])


def default_model() -> str:
    return _default_of(available_models())


def _default_of(models: list[ModelInfo]) -> str:
    ids = [m.id for m in models]
    wanted = conf.get("CHAT_MODEL")
    return wanted if wanted in ids else (ids[0] if ids else "demo")


def resolve(model_id: str | None) -> ModelInfo:
    """The model for an id a client sent (None: the default); Invalid if it is not offered."""
    models = available_models()  # once: it reads the settings and the environment (issue 14)
    model_id = model_id or _default_of(models)
    for info in models:
        if info.id == model_id:
            return info
    offered = ", ".join(m.id for m in models)
    raise Invalid(f"Unknown model {model_id!r}. This server offers: {offered}.")


def get_provider(info: ModelInfo) -> Provider:
    """The model's provider, its replies bounded by CHAT_MAX_OUTPUT_TOKENS whatever its server does."""
    cls = import_string(provider_classes()[info.provider])
    return limited(cls(info.name))

"""Which models are offered: CHAT_MODELS, or what keys and base URLs make available."""

import pytest

from chat.providers import catalog, registry
from tests.conftest import free_port


@pytest.fixture(autouse=True)
def automatic(settings):
    """No CHAT_MODELS: the catalog decides. Each test starts with no list of models kept."""
    settings.CHAT_MODELS, settings.CHAT_MODEL = [], ""
    catalog.forget()
    yield
    catalog.forget()


def ids() -> list[str]:
    return [m.id for m in registry.available_models()]


def test_nothing_configured_offers_the_demo_only():
    assert ids() == ["demo"]
    assert registry.default_model() == "demo"


def test_a_key_alone_offers_the_vendors_usual_models_first(settings):
    settings.OPENAI_API_KEY, settings.ANTHROPIC_API_KEY = "sk-x", "sk-ant-x"
    assert ids() == [
        *(f"openai:{m}" for m in catalog.OPENAI_MODELS),
        *(f"anthropic:{m}" for m in catalog.ANTHROPIC_MODELS),
        "demo",
    ]
    assert registry.default_model() == "openai:gpt-4o-mini"


def test_a_base_url_offers_the_models_the_server_lists_asked_once(settings, openai_vendor):
    settings.CHAT_MODELS = []
    settings.OPENAI_API_KEY = None  # as for Ollama
    openai_vendor.models = ["qwen2.5:7b", "llama3.2:3b", "nomic-embed-text:latest"]
    assert ids() == ["openai:llama3.2:3b", "openai:qwen2.5:7b", "demo"]  # no embedding model
    assert ids() == ["openai:llama3.2:3b", "openai:qwen2.5:7b", "demo"]
    listings = [r for r in openai_vendor.requests if r.method == "GET"]
    assert [r.path for r in listings] == ["/v1/models"]
    assert registry.default_model() == "openai:llama3.2:3b"


def test_a_server_that_cannot_list_its_models_leaves_the_demo(settings, openai_vendor):
    settings.CHAT_MODELS = []
    openai_vendor.models_status = 500
    assert ids() == ["demo"]
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    assert ids() == ["demo"]


def test_api_models_lists_them_and_the_page_offers_them(settings, openai_vendor, tab):
    settings.CHAT_MODELS = []
    settings.CHAT_MODEL = "demo"
    models = tab.get("/api/models").json()
    assert models == {
        "models": [
            {"id": "openai:gpt-test", "label": "gpt-test", "provider": "openai", "vision": True},
            {"id": "openai:llama3.2:3b", "label": "llama3.2:3b", "provider": "openai", "vision": True},
            {"id": "demo", "label": "Demo (offline)", "provider": "demo", "vision": True},
        ],
        "default": "demo",
    }
    page = tab.get("/").text
    assert 'id="model"' in page and "openai:llama3.2:3b" in page


def test_a_listed_model_is_asked_for_by_its_own_name(settings, openai_vendor, tab):
    settings.CHAT_MODELS = []
    sent = tab.send("Hi", model="openai:llama3.2:3b")
    stored = tab.wait_finished(sent["assistant_message"]["id"], sent["assistant_message"]["conversation_id"])
    assert stored["status"] == "complete"
    assert openai_vendor.completions()[-1].body["model"] == "llama3.2:3b"


def test_an_offered_model_without_its_key_answers_503(settings, tab):
    settings.CHAT_MODELS = ["demo", "anthropic:claude-x"]
    conversation = tab.conversation()
    response = tab.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": "Hi", "model": "anthropic:claude-x"},
    )
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable" and "ANTHROPIC_API_KEY" in response.json()["error"]

"""A scripted model, registered through the real registry (CHAT_PROVIDERS in tests/settings.py).

The user's message is its script, a JSON list of steps:
  {"say": "text"}           yield a delta
  {"say": "x", "times": 9}  yield "x" repeated (a big delta from a small script)
  {"gate": "name"}          wait until the test opens that gate (gate("name").set())
  {"sleep": 0.05}           pause
  {"fail": "sentence", "code": "rate_limited"}   raise ProviderError
  {"fail": "sentence", "unless": "name"}   the same, unless that gate is open (retry works)
  {"fail": "sentence", "if_system": true}  the same, only when the prompt has a system prompt
  {"crash": true}           raise an unexpected exception
  {"finish": "stop", "usage": [3, 5]}
"""

import asyncio
import json
import threading
from collections.abc import AsyncIterator

from django.conf import settings

from chat.providers import Finish, Prompt, Provider, ProviderError, Usage

GATES: dict[str, threading.Event] = {}
PROMPTS: list[Prompt] = []
CLOSED: list[str] = []  # scripts whose stream was closed before its end (a stop)


class ModelCalls:
    """The prompts the fake model was asked, for one test (the `model_calls` fixture puts it
    in the settings, which the test undoes)."""

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    def __len__(self) -> int:
        return len(self.prompts)


def gate(name: str) -> threading.Event:
    return GATES.setdefault(name, threading.Event())


def script(*steps: dict) -> str:
    return json.dumps(list(steps))


class ScriptProvider(Provider):
    name = "script"

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Finish]:
        PROMPTS.append(prompt)
        calls = getattr(settings, "FAKE_MODEL_CALLS", None)
        if calls is not None:
            calls.prompts.append(prompt)
        steps = json.loads(prompt.turns[-1].content)
        finished = False
        try:
            for step in steps:
                if "say" in step:
                    yield step["say"] * step.get("times", 1)
                elif "gate" in step:
                    event = gate(step["gate"])
                    while not event.is_set():  # noqa: ASYNC110 - a threading.Event, set by the test
                        await asyncio.sleep(0.005)
                elif "sleep" in step:
                    await asyncio.sleep(step["sleep"])
                elif "fail" in step:
                    if "unless" in step and gate(step["unless"]).is_set():
                        continue
                    if step.get("if_system") and not prompt.system:
                        continue
                    raise ProviderError(step["fail"], code=step.get("code", "upstream_error"))
                elif "crash" in step:
                    raise RuntimeError("boom")
                elif "finish" in step:
                    usage = step.get("usage")
                    yield Finish(reason=step["finish"], usage=Usage(*usage) if usage else None)
            finished = True
        finally:
            if not finished:
                CLOSED.append(prompt.turns[-1].content)

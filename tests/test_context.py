"""The conversation sent to a model fits CHAT_CONTEXT_CHARS: oldest turns dropped first."""

from chat.context import fit
from chat.providers import Turn


def turns(*texts: str) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(texts)]


def test_everything_is_sent_when_it_fits():
    history = turns("a" * 10, "b" * 10, "c" * 10)
    assert fit("s" * 5, history, 35) == tuple(history)


def test_the_oldest_turns_go_first_and_the_kept_history_starts_with_a_user_turn():
    history = turns("q1" * 10, "a1" * 10, "q2" * 10, "a2" * 10, "q3")
    # Room for q3, a2 and q2 (42 characters with the system prompt), not for a1 as well.
    assert fit("sys", history, 50) == tuple(history[2:])
    # Room for q3 and a2 only: a history may not start with the model's turn, so only q3.
    assert fit("sys", history, 30) == tuple(history[4:])


def test_the_new_message_and_the_system_prompt_are_never_dropped():
    history = turns("old", "older reply", "x" * 100)
    assert fit("a long system prompt", history, 10) == (history[-1],)
    assert fit("", [], 10) == ()


def test_the_budget_reaches_the_model(tab, openai_vendor, settings):
    settings.CHAT_CONTEXT_CHARS = 60
    conversation = tab.conversation(system_prompt="Be brief.", model="openai:gpt-test")
    for question in ("first question " * 2, "second question", "third"):
        openai_vendor.play({"say": f"answer to {question[:6]}"})
        sent = tab.send(question, conversation["id"])
        tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    messages = openai_vendor.completions()[-1].body["messages"]
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "answer to second"},
        {"role": "user", "content": "third"},
    ]

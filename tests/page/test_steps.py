"""The page shows a reply's reasoning and tool steps folded, live and after a reload (issue 12)."""

import re

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

USED = re.compile(r"^Used fruit_price \(\d+ ms\)$")
THOUGHT = re.compile(r"^Thought for \d+ seconds?$")


def test_reasoning_and_tool_steps_are_folded_live_and_after_a_reload(page, openai_vendor, settings):
    settings.CHAT_TOOLS = ["tests.test_tools_vendors.fruit_price"]
    openai_vendor.play(
        {"reason": "The price of pears, "},
        {"reason": "from the market tool."},
        {"gate": "call"},
        {"call": "fruit_price", "id": "c1", "args": ['{"name": ', '"pear", "count": 2}']},
        {"finish": "tool_calls"},
    )
    openai_vendor.play({"gate": "answer"}, {"say": "Two pears cost **10**."})
    page.goto("/")
    page.select_option("#model", "openai:gpt-test")
    page.fill("#prompt", "How much are two pears?")
    page.press("#prompt", "Enter")
    reply = page.locator(".msg.assistant").last
    reasoning = reply.locator(".step.reasoning")
    # Live: the reasoning streams into a folded step that says it is still thinking.
    expect(reasoning.locator("summary")).to_have_text("Thinking…")
    expect(reasoning.locator(".step-body")).to_have_text("The price of pears, from the market tool.")
    assert reasoning.get_attribute("open") is None
    expect(reply.locator(".progress")).to_have_text("Reasoning…")
    openai_vendor.gate("call").set()
    tool = reply.locator(".step.tool")
    expect(tool.locator("summary")).to_have_text(USED)
    expect(reasoning.locator("summary")).to_have_text(THOUGHT)
    assert tool.get_attribute("open") is None
    openai_vendor.gate("answer").set()
    expect(reply.locator(".markdown")).to_have_text("Two pears cost 10.")
    expect(reply).to_have_attribute("aria-busy", "false")
    # Unfolded on a click: the arguments and the result.
    tool.locator("summary").click()
    expect(tool.locator("pre").first).to_contain_text('"count": 2')
    expect(tool.locator("pre").last).to_contain_text('"total": 10')
    # After a reload: the same steps, from the stored message.
    page.reload()
    reply = page.locator(".msg.assistant").last
    expect(reply.locator(".markdown")).to_have_text("Two pears cost 10.")
    expect(reply.locator(".step")).to_have_count(2)
    expect(reply.locator(".step.reasoning summary")).to_have_text(THOUGHT)
    expect(reply.locator(".step.reasoning .step-body")).to_have_text(
        "The price of pears, from the market tool."
    )
    expect(reply.locator(".step.tool summary")).to_have_text(USED)
    assert reply.locator(".step.tool").get_attribute("open") is None


def test_a_reload_while_the_tool_runs_rebuilds_the_steps(page, openai_vendor, settings):
    settings.CHAT_TOOLS = ["tests.test_tools_vendors.fruit_price"]
    openai_vendor.play(
        {"reason": "Let me look."},
        {"call": "fruit_price", "id": "c1", "args": ['{"name": "apple"}']},
        {"finish": "tool_calls"},
    )
    openai_vendor.play({"say": "Half "}, {"gate": "rest"}, {"say": "done."})
    page.goto("/")
    page.select_option("#model", "openai:gpt-test")
    page.fill("#prompt", "apples?")
    page.press("#prompt", "Enter")
    reply = page.locator(".msg.assistant").last
    expect(reply.locator(".markdown")).to_have_text("Half")
    page.reload()  # mid-reply: the page follows it again from its start
    reply = page.locator(".msg.assistant").last
    expect(reply.locator(".step")).to_have_count(2)
    expect(reply.locator(".step.reasoning .step-body")).to_have_text("Let me look.")
    openai_vendor.gate("rest").set()
    expect(reply.locator(".markdown")).to_have_text("Half done.")
    expect(reply.locator(".step")).to_have_count(2)
    expect(reply.locator(".step.tool summary")).to_contain_text("Used fruit_price")

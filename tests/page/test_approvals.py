"""The page asks before a tool runs (CHAT_TOOLS_APPROVAL, issue 31): Approve and Deny in the
tool's step, live and again after a reload while the reply waits."""

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None


def _ask(page):
    page.goto("/")
    page.fill("#prompt", "What time is it?")
    page.press("#prompt", "Enter")
    return page.locator(".msg.assistant").last


def test_approve_in_the_tool_step_and_the_reply_completes(page, approval):
    reply = _ask(page)
    group = reply.locator(".step.tool [role=group]")
    expect(group).to_be_visible()
    expect(group).to_have_accessible_name("Run the tool current_time with the arguments above?")
    expect(reply.locator(".step.tool")).to_have_attribute("open", "")
    expect(reply.locator(".progress")).to_have_text("Waiting for your approval to run current_time…")
    # Keyboard reachable: focus the Approve button and press Enter.
    approve = group.get_by_role("button", name="Approve")
    approve.focus()
    page.keyboard.press("Enter")
    expect(reply).to_have_attribute("aria-busy", "false")
    expect(reply.locator(".markdown")).to_contain_text("The server's clock says it is")
    expect(group).to_have_count(0)
    expect(reply.locator(".step.tool summary")).to_contain_text("Used current_time")


def test_deny_reaches_the_model_and_a_reload_while_waiting_asks_again(page, approval):
    reply = _ask(page)
    expect(reply.locator(".step.tool [role=group]")).to_be_visible()
    page.reload()  # the reply still waits: its resumed stream asks again
    reply = page.locator(".msg.assistant").last
    group = reply.locator(".step.tool [role=group]")
    expect(group).to_be_visible()
    group.get_by_role("button", name="Deny").click()
    expect(reply).to_have_attribute("aria-busy", "false")
    expect(reply.locator(".markdown")).to_contain_text("The person refused to run this tool.")
    expect(reply.locator(".step.tool")).to_have_class("step tool failed")
    expect(group).to_have_count(0)


def test_a_failed_decision_shows_the_servers_sentence_and_can_be_tried_again(page, approval, context):
    reply = _ask(page)
    group = reply.locator(".step.tool [role=group]")
    expect(group).to_be_visible()
    token = next(c for c in context.cookies() if c["name"] == "csrftoken")
    context.clear_cookies(name="csrftoken")  # the server refuses the POST: a real 403 and its sentence
    group.get_by_role("button", name="Approve").click()
    expect(group.locator("[role=alert]")).to_contain_text("This request needs the CSRF token")
    expect(group.get_by_role("button", name="Approve")).to_be_enabled()
    context.add_cookies([token])
    group.get_by_role("button", name="Approve").click()
    expect(reply).to_have_attribute("aria-busy", "false")
    expect(reply.locator(".markdown")).to_contain_text("The server's clock says it is")

def test_loads(page):
    page.goto("/")
    page.fill("#prompt", "Hello there")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming) .markdown pre code.hljs", timeout=10000)
    page.screenshot(path="/tmp/shot1.png")
    print(page.inner_text(".log")[:500])

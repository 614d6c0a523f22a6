"""The demo model tells what files it received; the answer cache keys a turn's files (issue 30)."""

from dataclasses import replace

from chat.answercache import answer_key
from chat.providers import Attachment, Finish, Prompt, ToolSpec, Turn
from chat.providers.demo import DEMO_TOOL, DemoProvider, compose
from chat.providers.limit import limited
from tests.attachment_files import pdf, png, text
from tests.vendor_servers import collect


def _reply(prompt: Prompt) -> str:
    items, error = collect(DemoProvider("demo"), prompt)
    assert error is None and isinstance(items[-1], Finish)
    return "".join(item for item in items if isinstance(item, str))


def test_the_demo_answer_starts_with_what_it_received():
    photo, report, table = png(64, 48), pdf("Quarterly results are in", "Page two"), text()
    prompt = Prompt("demo", "", (Turn("user", "What are these?", attachments=(photo, report, table)),))
    assert _reply(prompt) == (
        "I received 3 files:\n\n"
        f"- `photo.png`: image/png, {photo.size:,} bytes, 64×48 px\n"
        f"- `report.pdf`: application/pdf, {report.size:,} bytes, 2 pages, "
        "begins “Quarterly results are in Page two”\n"
        f"- `data.csv`: text/csv, {table.size} bytes, begins “a,b 1,2”\n\n" + compose("What are these?")
    )


def test_the_demo_reads_an_images_dimensions_itself_and_cuts_long_text():
    photo = replace(png(30, 20), width=None, height=None)
    notes = text("one two three four five six seven eight nine ten", name="n.txt", content_type="text/plain")
    answer = _reply(Prompt("demo", "", (Turn("user", "", attachments=(photo, notes)),)))
    assert answer.startswith(
        f"I received 2 files:\n\n- `photo.png`: image/png, {photo.size:,} bytes, 30×20 px\n"
        f"- `n.txt`: text/plain, {notes.size} bytes, begins “one two three four five six seven eight …”\n\n"
    )


def test_the_demo_answer_without_files_is_unchanged_and_files_of_earlier_turns_are_not_listed():
    turns = (Turn("user", "Look", attachments=(png(),)), Turn("assistant", "Seen."), Turn("user", "Hi"))
    assert _reply(Prompt("demo", "", turns)) == compose("Hi")


def test_after_its_tool_the_demo_still_says_what_it_received(settings):
    settings.CHAT_DEMO_STEPS = True
    question = Turn("user", "When?", attachments=(png(),))
    answer = _reply(
        Prompt(
            "demo",
            "",
            (
                question,
                Turn("assistant", "", tool_calls=()),
                Turn("tool", "late", tool_call_id="call_demo_1"),
            ),
            tools=(ToolSpec(DEMO_TOOL, "the time", {"type": "object"}),),
        )
    )
    assert answer.startswith("I received 1 file:\n\n- `photo.png`")
    assert "The server's clock says it is late" in answer


def test_the_cache_key_covers_each_files_bytes_type_and_name():
    provider = limited(DemoProvider("demo"))
    photo = png()

    def key(*attachments: Attachment) -> str:
        prompt = Prompt("demo", "", (Turn("user", "What is it?", attachments=attachments),))
        return answer_key(provider=provider, prompt=prompt, scope="global")

    other_pixels = png(41, 30)
    variants = [
        key(),
        key(other_pixels),
        key(replace(photo, name="other.png")),
        key(replace(photo, content_type="image/webp")),
        key(photo, photo),
    ]
    assert key(photo) == key(png())  # the same file, uploaded again
    assert len({key(photo), *variants}) == len(variants) + 1


def test_the_settings_that_shape_a_file_on_the_wire_are_keyed_with_files_only(settings):
    provider = limited(DemoProvider("demo"))
    with_file = Prompt("demo", "", (Turn("user", "What is it?", attachments=(pdf(),)),))
    plain = Prompt("demo", "", (Turn("user", "What is it?"),))
    before = [answer_key(provider=provider, prompt=p, scope="global") for p in (with_file, plain)]
    settings.CHAT_OPENAI_PDF = "text"
    after = [answer_key(provider=provider, prompt=p, scope="global") for p in (with_file, plain)]
    assert before[0] != after[0] and before[1] == after[1]

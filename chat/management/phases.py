"""What `manage.py chat` shows on stderr while a reply runs (issue 32): its phases.

Before its first word a reply may think, reason and run tools for seconds; the terminal
client used to be silent all that while. Each phase is a line on stderr as it begins
("Thinking…", "Reasoning…", "Running tool current_time…", "current_time done in 12 ms"),
so stdout carries the reply's text alone and a pipe stays clean. On a terminal the reasoning
text itself follows "Reasoning…", dimmed. Where stderr is no terminal (a log), all this is
written only with --reasoning, plain.
"""

from collections.abc import Callable

from django.utils.translation import gettext as _

from chat.eventlog import Event, ReasoningText, Status, ToolCallStep, ToolResultStep

DIM, RESET = "\x1b[2m", "\x1b[0m"


def status_label(state: str) -> str:
    """The page's words for a reply's state (chat/static/chat/reply.js, STATES)."""
    labels = {
        "thinking": _("Thinking…"),
        "queued": _("Waiting for the model…"),
        "reconnecting": _("Reconnecting…"),
        "cached": _("Answered before: from the cache…"),
        "reasoning": _("Reasoning…"),
        "writing": _("Writing…"),
    }
    return labels.get(state, f"{state[:1].upper()}{state[1:]}…")


class PhaseReporter:
    """Writes the phases of one reply through `write` (to stderr, flushed); told by
    `text_written` where stdout stands.

    `show` says whether anything is written (a terminal, or --reasoning); `color` whether the
    reasoning text is dimmed with ANSI codes (a terminal, without --no-color).
    """

    def __init__(self, write: Callable[[str], None], *, show: bool, color: bool) -> None:
        self.write = write
        self.show = show
        self.color = color
        self.last_state: str | None = None
        self.in_reasoning = False  # the reasoning phase is on, since its line
        self.mid_reasoning = False  # the reasoning text written did not end a line
        self.mid_line = False  # stdout's last text did not end a line

    def text_written(self, text: str) -> None:
        if text:
            self.mid_line = not text.endswith("\n")
            self.close_reasoning()
            self.last_state = "writing"

    def event(self, item: Event) -> None:
        if not self.show:
            return
        if isinstance(item, Status):
            self.phase(item.state, status_label(item.state))
        elif isinstance(item, ReasoningText):
            self.reasoning_text(item.text)
        elif isinstance(item, ToolCallStep):
            self.phase(f"tool:{item.call_id}", _("Running tool %(name)s…") % {"name": item.name})
        elif isinstance(item, ToolResultStep):
            self.tool_done(item)

    def phase(self, key: str, label: str) -> None:
        """A line for a phase that begins; a repeated state (a reconnect's replay) says nothing."""
        if key == self.last_state:
            return
        self.last_state = key
        self.line(label)

    def reasoning_text(self, text: str) -> None:
        if not self.in_reasoning:
            self.phase("reasoning", status_label("reasoning"))
            self.in_reasoning = True
        self.write(f"{DIM}{text}{RESET}" if self.color else text)
        self.mid_reasoning = not text.endswith("\n")

    def tool_done(self, item: ToolResultStep) -> None:
        values = {"name": item.name, "ms": item.duration_ms, "error": item.error}
        if item.error:
            label = _("%(name)s failed in %(ms)s ms: %(error)s") % values
        else:
            label = _("%(name)s done in %(ms)s ms") % values
        self.last_state = f"done:{item.call_id}"
        self.line(label)

    def close_reasoning(self) -> None:
        if self.in_reasoning and self.mid_reasoning:
            self.write("\n")
        self.in_reasoning = False
        self.mid_reasoning = False

    def line(self, label: str) -> None:
        """One whole line on stderr, on a line of its own even when stdout stopped mid-line."""
        self.close_reasoning()
        lead = "\n" if self.mid_line else ""
        self.mid_line = False
        self.write(f"{lead}{label}\n")

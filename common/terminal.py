"""Text for a terminal: rich renderables without blanks at the ends of lines, and messages wrapped to the
terminal's width without ever splitting a word (a URL, a path, a key path stays whole)."""
from __future__ import annotations

import os
import re
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # ./kit itself wraps its messages without loading rich
    from rich.console import Console, RenderableType

TRAILING_BLANKS = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$")
CONTINUATION = "  "  # a wrapped line's continuation is indented two columns past the line's own indent


def emit(console: Console, renderable: RenderableType) -> None:
    """Print like console.print, without the blanks rich pads wrapped lines and table cells with; a line of text
    wraps at blanks only (rich would fold a path or URL longer than the line in two)."""
    from rich.text import Text

    if isinstance(renderable, str):
        renderable = console.render_str(renderable)
    with console.capture() as captured:
        if isinstance(renderable, Text):
            for line in _unfolded(renderable, console.width):
                console.print(line, soft_wrap=True)
        else:
            console.print(renderable)
    for line in captured.get().splitlines():
        console.file.write(TRAILING_BLANKS.sub(r"\1", line) + "\n")
    console.file.flush()


def _unfolded(text, width: int) -> list:
    """`text`'s lines wrapped at blanks to `width`; a word longer than the line stays whole on a line of its own."""
    lines = []
    for line in text.split("\n"):
        offsets, start = [], 0
        for word in re.finditer(r"\S+", line.plain):
            if word.start() > start and word.end() - start > width:
                offsets.append(word.start())
                start = word.start()
        pieces = list(line.divide(offsets))
        for piece in pieces:
            piece.rstrip()  # in place: the blank a line was broken at
        lines += pieces
    return lines


def columns_set() -> int | None:
    """COLUMNS, when set to a width (the variable shutil and rich read too)."""
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def terminal_columns(stream) -> int | None:
    """The width of the terminal `stream` shows on (COLUMNS when set); None for a pipe or a file."""
    try:
        if not stream.isatty():
            return None
        return columns_set() or os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # a stream without a file descriptor, or a closed one
        return None


def wrap(text: str, width: int | None) -> str:
    """Each line of `text` wrapped to `width` at blanks only, continuing indented; unchanged when width is None."""
    if width is None:
        return text
    return "\n".join(_wrap_line(line, width) for line in text.split("\n"))


def _wrap_line(line: str, width: int) -> str:
    if len(line) <= width:
        return line
    indent = line[:len(line) - len(line.lstrip())]
    return textwrap.fill(line.strip(), width, initial_indent=indent, subsequent_indent=indent + CONTINUATION,
                         break_long_words=False, break_on_hyphens=False)

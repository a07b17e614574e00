"""Printing rich renderables for an 80-column terminal or a pipe: no blanks left at the ends of lines."""
import re

from rich.console import Console, RenderableType

TRAILING_BLANKS = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$")


def emit(console: Console, renderable: RenderableType) -> None:
    """Print like console.print, without the blanks rich pads wrapped lines and table cells with."""
    with console.capture() as captured:
        console.print(renderable)
    for line in captured.get().splitlines():
        console.file.write(TRAILING_BLANKS.sub(r"\1", line) + "\n")
    console.file.flush()

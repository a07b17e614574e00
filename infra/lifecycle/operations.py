"""preview / up / refresh / destroy of one stack, streaming Pulumi's output, returning a change summary."""
from collections.abc import Callable

from pulumi import automation as auto

PrintLine = Callable[[str], None]


def run_operation(stack: auto.Stack, operation: str, print_line: PrintLine, *, expect_no_changes: bool = False) -> str:
    """Run `operation` on `stack`; return its resource changes as one line. Raises auto.CommandError on failure."""
    if operation == "preview":
        return changes_line(stack.preview(on_output=print_line, expect_no_changes=expect_no_changes).change_summary)
    run = {"up": stack.up, "refresh": stack.refresh, "destroy": stack.destroy}[operation]
    return changes_line(run(on_output=print_line).summary.resource_changes)


def changes_line(changes: dict[str, int] | None) -> str:
    """{'create': 3, 'same': 10} -> 'create 3, same 10'."""
    return ", ".join(f"{op} {count}" for op, count in sorted((changes or {}).items()) if count) or "no changes"

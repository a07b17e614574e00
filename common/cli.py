"""The `./kit` command: invoke's program over tasks.py, with command-line mistakes reported as bad input (exit 2)."""
import sys

from invoke import Program
from invoke.exceptions import ParseError

BAD_INPUT = 2


class KitProgram(Program):
    """Like `invoke`, but an unknown task, a missing argument or a malformed option exits 2, as bad input does."""

    def print_version(self) -> None:
        from importlib.metadata import version  # ~25 ms, so only for --version

        print(f"{self.name} {version(self.name)}")

    def parse_core(self, argv):
        self._bad_input_exits(super().parse_core, argv)

    def parse_tasks(self):
        self._bad_input_exits(super().parse_tasks)

    @staticmethod
    def _bad_input_exits(parse, *args) -> None:
        try:
            parse(*args)
        except ParseError as err:
            print(f"kit: {err}", file=sys.stderr)
            sys.exit(BAD_INPUT)
        except ValueError as err:  # invoke casts option values (e.g. int) while parsing, and lets this escape
            print(f"kit: invalid option value: {err}", file=sys.stderr)
            sys.exit(BAD_INPUT)


def main() -> None:
    KitProgram(binary="./kit", name="mlops-edge-kit").run()


if __name__ == "__main__":
    main()

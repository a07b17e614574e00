"""The `./kit` command: invoke's program over tasks.py, with command-line mistakes reported as bad input (exit 2)
in the kit's own words, `-p` meaning --project-dir on every task, and task help that shows the defaults."""
import io
import os
import re
import sys
import textwrap
from contextlib import redirect_stdout

from invoke import Program
from invoke.exceptions import Exit, ParseError
from invoke.parser import Argument

from common.file_errors import file_problem
from common.suggest import did_you_mean

BAD_INPUT = 2
WIDTH = 80
KINDS = {int: "a whole number", float: "a number", str: "a value", list: "a value (repeatable)"}
FLAG = re.compile(r"^Flag <\w*Argument: ([^ >]+)")
# invoke's completion scripts run `kit --complete`; these run the kit the way it was typed (./kit, a path, kit)
AS_TYPED = {"`kit --complete": '`"${COMP_WORDS[0]}" --complete',
            "$(kit ${=collection_arg}": '$("${words[1]}" ${=collection_arg}'}


class KitArgument(Argument):
    """An option whose badly typed value is a ParseError naming the option and what it takes."""

    task = ""

    def set_value(self, value, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            raise ParseError(f"{self.task}: {_flag(self)} takes {KINDS.get(self.kind, 'a value')}, "
                             f"got {value!r}") from None


class KitProgram(Program):
    """Like `invoke`, but every command-line mistake exits 2 with a message that names the option."""

    def run(self, argv=None, exit: bool = True) -> None:
        super().run(_help_first(sys.argv if argv is None else argv), exit)

    def load_collection(self) -> None:
        super().load_collection()
        _kit_arguments(self.collection)

    def execute(self) -> None:
        """Run the tasks; a file operation the environment refused (read-only checkout, --out naming a file) is bad
        input naming the directory and the option, not a traceback."""
        try:
            super().execute()
        except OSError as err:
            problem = file_problem(err, {f"--{a.names[0]}": a.value for context in self.tasks
                                         for a in context.args.values() if a.got_value and isinstance(a.value, str)})
            if problem is None:
                raise
            raise Exit(f"{self.tasks[0].name}: {problem}", code=BAD_INPUT) from None

    def no_tasks_given(self) -> None:
        self.list_tasks()
        print(f"Run `{self.binary} --help TASK` for a task's options.")
        raise Exit

    def print_version(self) -> None:
        from importlib.metadata import version  # ~25 ms, so only for --version

        print(f"{self.name} {version(self.name)}")

    def print_task_help(self, name: str) -> None:
        """Usage, the docstring wrapped to 80 columns, and every option with its default."""
        context = self.parser.contexts[name]
        print(f"Usage: {self.binary} {name}{' [--options]' if context.flags else ''}\n")
        for paragraph in (self.collection[name].__doc__ or "").strip().split("\n\n"):
            print(textwrap.fill(" ".join(paragraph.split()), WIDTH, initial_indent="  ", subsequent_indent="  "))
        print("\nOptions:\n")
        self.print_columns([(spec, _with_default(help, _argument_of(context, spec))) for spec, help
                            in context.help_tuples()] or [("none", "")])
        print()

    def parse_core(self, argv) -> None:
        if not any(a.startswith("--print-completion-script") for a in argv):
            return self._bad_input_exits(super().parse_core, argv)
        script = io.StringIO()
        try:
            with redirect_stdout(script):
                self._bad_input_exits(super().parse_core, argv)
        finally:
            print(_as_typed(script.getvalue()), end="")

    def parse_tasks(self) -> None:
        self._bad_input_exits(super().parse_tasks)

    def _bad_input_exits(self, parse, *args) -> None:
        try:
            parse(*args)
        except ParseError as err:
            print(f"kit: {self._in_kit_words(err)}", file=sys.stderr)
            sys.exit(BAD_INPUT)

    def _in_kit_words(self, err: ParseError) -> str:
        """invoke's parse errors, said with the task and the option's name, what it takes and a hint."""
        message, context = str(err), err.context
        unknown = re.match(r"^No idea what '(.*)' is!$", message)
        if unknown and (context is None or not unknown.group(1).startswith("-")):
            return f"no task named {unknown.group(1)!r}{did_you_mean(unknown.group(1), self._task_names())}; " \
                   f"`{self.binary} --list` shows every task"
        if context is None or not context.name:
            return message
        if unknown:
            return f"{context.name}: no option {unknown.group(1)}" \
                   f"{did_you_mean(unknown.group(1), [f for f in context.flags if f.startswith('--')])}; " \
                   f"`{self.binary} --help {context.name}` lists them"
        flag = FLAG.match(message)
        argument = _argument_named(context, flag.group(1)) if flag else None
        if argument is not None and "needed value" in message:
            return f"{context.name}: {_flag(argument)} needs {KINDS.get(argument.kind, 'a value')}: {argument.help}"
        if argument is not None and "doesn't take any value" in message:
            return f"{context.name}: {_flag(argument)} is a switch and takes no value"
        if "did not receive required positional arguments" in message:
            missing = context.missing_positional_args
            return f"{context.name}: " + "; ".join(
                f"{_flag(a)} is required ({a.help}): give it as `{self.binary} {context.name} "
                f"{a.name.upper()}` or {_flag(a)} {a.name.upper()}" for a in missing)
        return f"{context.name}: {message}"

    def _task_names(self) -> list[str]:
        return list(self.collection.task_names) if self.collection is not None else []


def _help_first(argv: list[str]) -> list[str]:
    """`./kit TASK ... --help` as `./kit --help TASK` (invoke would take --help for a positional argument)."""
    words = argv[1:]
    task = next((w for w in words if not w.startswith("-")), None)
    if task is not None and "--help" in words[words.index(task):]:
        return [argv[0], "--help", task]
    return list(argv)


def _as_typed(script: str) -> str:
    for invoke_text, kit_text in AS_TYPED.items():
        script = script.replace(invoke_text, kit_text)
    return script


def _kit_arguments(collection) -> None:
    """Every task's options as KitArguments, -p meaning --project-dir (see _short_p_for_project_dir)."""
    for name in collection.task_names:
        task = collection[name]
        if getattr(task, "_kit_arguments", False):
            continue
        original = task.get_arguments

        def get_arguments(*args, _original=original, _name=name, **kwargs):
            arguments = _original(*args, **kwargs)
            for argument in arguments:
                argument.__class__, argument.task = KitArgument, _name
            _short_p_for_project_dir(arguments)
            return arguments

        task.get_arguments, task._kit_arguments = get_arguments, True


def _short_p_for_project_dir(arguments: list[Argument]) -> None:
    """-p is --project-dir where a task has one, and no other option's short flag anywhere."""
    taken = {n for a in arguments for n in a.names}
    for argument in arguments:
        if argument.names[0] == "project-dir":
            argument.names = ("project-dir", "p")
        elif "p" in argument.names:
            free = next((c for c in argument.names[0] if c.isalpha() and c not in taken and c != "p"), None)
            argument.names = tuple(n for n in argument.names if n != "p") + ((free,) if free else ())
            taken.add(free)


def _argument_named(context, name: str):
    return next((a for a in context.args.values() if name in a.names), None)


def _flag(argument: Argument) -> str:
    return f"--{argument.names[0]}"


def _argument_of(context, spec: str) -> Argument:
    """The argument a help spec like '-p STRING, --project-dir=STRING' describes."""
    flags = {part.strip().split("=")[0].split(" ")[0].split("[")[0] for part in spec.split(",")}
    return next(a for a in context.args.values() if any(("--" if len(n) > 1 else "-") + n in flags for n in a.names))


def _with_default(help_text: str | None, argument: Argument) -> str:
    help_text = help_text or ""
    default = argument.default
    if default is None or default is False or default in ("", []) or "default" in help_text:
        return help_text
    return f"{help_text} (default: {default})".strip()


def main() -> None:
    try:
        KitProgram(binary="./kit", binary_names=["kit"], name="mlops-edge-kit").run()
    except BrokenPipeError:  # `./kit ... | head` closed the pipe: as the Python docs advise (signal, SIGPIPE),
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no traceback, no flush error at exit
        sys.exit(1)


if __name__ == "__main__":
    main()

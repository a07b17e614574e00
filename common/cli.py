"""The `./kit` command: invoke's program over tasks.py, with command-line mistakes reported as bad input (exit 2)
in the kit's own words, one meaning per short option on every task (SHORT_FLAGS; -h is help), messages wrapped
to the terminal, and task help that shows the defaults."""
import io
import os
import re
import sys
import textwrap
from contextlib import redirect_stdout

from invoke import Program
from invoke.exceptions import Exit, ParseError
from invoke.parser import Argument

from common.file_errors import file_problem, output_directory_problem
from common.paths import caller_path, take_caller_cwd
from common.suggest import did_you_mean
from common.terminal import columns_set, terminal_columns, wrap

BAD_INPUT = 2
WIDTH = 80  # help's width when stdout is no terminal and COLUMNS is unset
# The only short flags: each means one option on every task that has it. invoke would derive one from each
# option's first free letter (-h was --hosts on lab.up, -p --pty or --parallel elsewhere); the others are long only.
SHORT_FLAGS = {"env": "e", "out": "o", "site": "s", "json": "j", "project-dir": "p", "yes": "y"}
CORE_SHORT_FLAGS = {"help": "h", "list": "l", "version": "V"}  # invoke's -p --pty, -e --echo, -d --debug... go
KINDS = {int: "a whole number", float: "a number", str: "a value", list: "a value (repeatable)"}
FLAG = re.compile(r"^Flag <\w*Argument: ([^ >]+)")
# invoke's completion scripts run `kit --complete`; these run the kit the way it was typed (./kit, a path, kit)
AS_TYPED = {"`kit --complete": '`"${COMP_WORDS[0]}" --complete',
            "$(kit ${=collection_arg}": '$("${words[1]}" ${=collection_arg}'}
TYPED_KIT = re.compile(r"^\S*/kit(?= |$)")  # ./kit, /path/to/kit


class KitArgument(Argument):
    """An option whose badly typed value is a ParseError naming the option and what it takes, and whose path
    (common.paths) resolves against the caller's directory."""

    task = ""
    caller_cwd = ""

    def set_value(self, value, cast: bool = True) -> None:
        if isinstance(value, str):
            value = caller_path(self.names[0], value, self.caller_cwd)
        try:
            super().set_value(value, cast)
        except ValueError:
            raise ParseError(f"{self.task}: {_flag(self)} takes {KINDS.get(self.kind, 'a value')}, "
                             f"got {value!r}") from None


class KitProgram(Program):
    """Like `invoke`, but every command-line mistake exits 2 with a message that names the option."""

    argv: list[str] = []
    caller_cwd = ""

    def run(self, argv=None, exit: bool = True) -> None:
        self.argv = _help_first(sys.argv if argv is None else argv)
        self.caller_cwd = take_caller_cwd()
        super().run(self.argv, exit)

    def core_args(self) -> list[Argument]:
        """invoke's core options, only -h, -l and -V keeping a short flag (after a task, invoke's -p --pty or -e
        --echo would mean one thing there and another where the task has a -p)."""
        arguments = super().core_args()
        for argument in arguments:
            short = CORE_SHORT_FLAGS.get(argument.names[0])
            argument.names = (argument.names[0], *((short,) if short else ()))
        return arguments

    def load_collection(self) -> None:
        super().load_collection()
        KitArgument.caller_cwd = self.caller_cwd  # one program per process: its arguments resolve against it
        _kit_arguments(self.collection)

    def execute(self) -> None:
        """Run the tasks; a file operation the environment refused (read-only checkout, --out naming a file) is bad
        input naming the directory and the option, not a traceback."""
        self._refuse_outputs_that_are_files()
        try:
            super().execute()
        except OSError as err:
            problem = file_problem(err, {f"--{a.names[0]}": a.value for context in self.tasks
                                         for a in context.args.values() if a.got_value and isinstance(a.value, str)})
            if problem is None:
                raise
            raise Exit(wrap(f"{self.tasks[0].name}: {problem}", terminal_columns(sys.stderr)), code=BAD_INPUT) \
                from None
        except Exit as err:
            if not err.message:
                raise
            raise Exit(wrap(err.message, terminal_columns(sys.stderr)), code=err.code) from None

    def _refuse_outputs_that_are_files(self) -> None:
        """--out (a directory on every task) naming a file, or a path through one: exit 2 before the task runs, so
        it neither fails half-way nor replaces the file."""
        for context in self.tasks:
            out = context.args.get("out")
            problem = output_directory_problem("--out", out.value) if out is not None and out.got_value else None
            if problem:
                raise Exit(wrap(f"{context.name}: {problem}", terminal_columns(sys.stderr)), code=BAD_INPUT)

    def no_tasks_given(self) -> None:
        self.list_tasks()
        print(f"Run `{self.binary} --help TASK` for a task's options.")
        raise Exit

    def print_version(self) -> None:
        from importlib.metadata import version  # ~25 ms, so only for --version

        print(f"{self.name} {version(self.name)}")

    def print_task_help(self, name: str) -> None:
        """Usage, the docstring wrapped to the terminal (80 columns without one), and every option's default."""
        context = self.parser.contexts[name]
        print(f"Usage: {self.binary} {name}{' [--options]' if context.flags else ''}\n")
        for paragraph in (self.collection[name].__doc__ or "").strip().split("\n\n"):
            print(textwrap.fill(" ".join(paragraph.split()), _help_width(), initial_indent="  ",
                                subsequent_indent="  ", break_long_words=False, break_on_hyphens=False))
        print("\nOptions:\n")
        self.print_columns([(spec, _with_default(help, _argument_of(context, spec))) for spec, help
                            in context.help_tuples()] or [("none", "")])
        print()

    def print_columns(self, tuples) -> None:
        """invoke's two columns (flag, help), never splitting a word: a help whose longest word (a URL) does not fit
        beside its flag goes below it."""
        spec_width = max(len(spec) for spec, _ in tuples)
        indent, padding = self.leading_indent, " " * self.col_padding
        beside = _help_width() - len(indent) - spec_width - len(padding)
        below = _help_width() - len(indent) * 3
        for spec, help_text in tuples:
            words = (help_text or "").split()
            if not words:
                print(f"{indent}{spec}")
            elif max(map(len, words)) <= beside:
                lines = textwrap.wrap(" ".join(words), beside, break_long_words=False, break_on_hyphens=False)
                print(f"{indent}{spec.ljust(spec_width)}{padding}{lines[0]}")
                for line in lines[1:]:
                    print(f"{' ' * (len(indent) + spec_width + len(padding))}{line}")
            else:
                print(f"{indent}{spec}")
                print(textwrap.fill(" ".join(words), below, initial_indent=indent * 3, subsequent_indent=indent * 3,
                                    break_long_words=False, break_on_hyphens=False))
        print("")

    def parse_core(self, argv) -> None:
        if not any(a.startswith("--print-completion-script") for a in argv):
            return self._bad_input_exits(super().parse_core, argv)
        script = io.StringIO()
        try:
            with redirect_stdout(script):
                self._bad_input_exits(super().parse_core, argv)
        finally:
            print(_as_typed(script.getvalue()), end="")

    def parse_cleanup(self) -> None:
        if self.args.complete.value:  # the shell passes the line as typed: `./kit edge.bootstrap --`
            self.core.remainder = TYPED_KIT.sub("kit", self.core.remainder)  # invoke only strips a leading `kit `
        super().parse_cleanup()

    def parse_tasks(self) -> None:
        self._bad_input_exits(super().parse_tasks)

    def _bad_input_exits(self, parse, *args) -> None:
        try:
            parse(*args)
        except ParseError as err:
            print(wrap(f"kit: {self._in_kit_words(err)}", terminal_columns(sys.stderr)), file=sys.stderr)
            sys.exit(BAD_INPUT)

    def _in_kit_words(self, err: ParseError) -> str:
        """invoke's parse errors, said with the task and the option's name, what it takes and a hint."""
        message, context = str(err), err.context
        unknown = re.match(r"^No idea what '(.*)' is!$", message)
        switch = unknown and context is not None and self._switch_given_a_value(context, unknown.group(1))
        if switch:
            return f"{context.name}: {_flag(switch)} is a switch and takes no value (got {unknown.group(1)!r}): " \
                   f"give {_flag(switch)} alone to turn it on, or leave it out"
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
            return "\n".join(
                f"{'' if i == 0 else 'kit: '}{context.name}: {_flag(a)} is required ({a.help}): give it as "
                f"`{self.binary} {context.name} {a.name.upper()}` or {_flag(a)} {a.name.upper()}"
                for i, a in enumerate(missing))
        return f"{context.name}: {message}"

    def _switch_given_a_value(self, context, word: str):
        """The switch (--json) that `word` was typed as the value of, as --json=yes or --json yes; else None."""
        for before, typed in zip(self.argv, self.argv[1:]):
            flag, equals, value = typed.partition("=")
            given = (flag, value) if equals else (before, typed)
            argument = context.flags[given[0]] if given[1] == word and given[0] in context.flags else None
            if argument is not None and not argument.takes_value:  # flags[] sees short aliases, .get() does not
                return argument
        return None

    def _task_names(self) -> list[str]:
        return list(self.collection.task_names) if self.collection is not None else []


def _help_first(argv: list[str]) -> list[str]:
    """`./kit TASK ... --help` (or -h) as `./kit --help TASK` (invoke would take it for a positional argument)."""
    words = argv[1:]
    task = next((w for w in words if not w.startswith("-")), None)
    if task is not None and {"--help", "-h"} & set(words[words.index(task):]):
        return [argv[0], "--help", task]
    return list(argv)


def _as_typed(script: str) -> str:
    for invoke_text, kit_text in AS_TYPED.items():
        script = script.replace(invoke_text, kit_text)
    return script


def _help_width() -> int:
    return terminal_columns(sys.stdout) or columns_set() or WIDTH


def _kit_arguments(collection) -> None:
    """Every task's options as KitArguments, with the kit's short flags only (SHORT_FLAGS)."""
    for name in collection.task_names:
        task = collection[name]
        if getattr(task, "_kit_arguments", False):
            continue
        original = task.get_arguments

        def get_arguments(*args, _original=original, _name=name, **kwargs):
            arguments = _original(*args, **kwargs)
            for argument in arguments:
                argument.__class__, argument.task, argument.names = KitArgument, _name, _kit_names(argument.names)
            return arguments

        task.get_arguments, task._kit_arguments = get_arguments, True


def _kit_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """An option's long name and its short flag from SHORT_FLAGS if any (one-letter options, like test's -k, stay)."""
    long = names[0]
    return (long, *((SHORT_FLAGS[long],) if long in SHORT_FLAGS else ()))


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

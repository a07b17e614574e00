"""`./kit mutate`: mutmut (PyPI, pinned in pyproject's `mutate` extra) over the safety-critical modules of
mutation_targets.yaml, each in its own copy of the checkout under the user's cache (mutmut writes a `mutants/` tree
beside the code and reads its settings from the copy's pyproject.toml), scored per module with its survivors."""
import fnmatch
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common import yamlio

ROOT = Path(__file__).resolve().parents[1]
TARGETS_FILE = Path(__file__).with_name("mutation_targets.yaml")
PACKAGES = ["agents", "common", "edge_hosts", "fleet", "infra", "lab"]  # copied into mutants/ (tests import them)
ALSO_COPY = ["kit", "tasks.py", "Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.qa.yaml", "Pulumi.uat.yaml",
             "Pulumi.prod.yaml", "pipelines", "benchmarks", "docs", "mkdocs.yml", "README.md"]
KILLED = {"killed", "timeout", "caught by type check"}  # mutmut's statuses of a mutant the tests detected
RESULT = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")  # a line of `mutmut results --all true`


class MutationError(Exception):
    """mutmut could not score a module (its message says why, with the log's path)."""


@dataclass
class Score:
    module: str
    statuses: dict[str, str]  # mutant name -> mutmut's status

    @property
    def killed(self) -> int:
        return sum(status in KILLED for status in self.statuses.values())

    @property
    def timeouts(self) -> int:
        return sum(status == "timeout" for status in self.statuses.values())

    @property
    def survivors(self) -> list[str]:
        return sorted(f"{name}: {status}" for name, status in self.statuses.items() if status not in KILLED)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / len(self.statuses) if self.statuses else 0.0


def ensure_mutmut() -> None:
    """mutmut from the kit's `mutate` extra, installed into the kit's environment on first use."""
    if importlib.util.find_spec("mutmut") is None:
        print("mutate: installing the `mutate` extra (mutmut) on first use", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e",
                        f"{ROOT}[mutate]"], check=True)


def load_targets(path: Path = TARGETS_FILE) -> dict[str, dict]:
    return yamlio.load(path.read_text(), str(path))


def work_dir(module: str) -> Path:
    """The copy of the checkout one module is mutated in (a fresh one per run)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mlops-edge-kit" / "mutate" / module.removesuffix(".py").replace("/", ".") / "main"


def prepare(module: str, target: dict, work: Path) -> None:
    """Copy the checkout's files (tracked and new, not ignored) to `work`, link what lies beside the checkout
    beside it too, and write mutmut's settings for this module into the copy's pyproject.toml."""
    shutil.rmtree(work.parent, ignore_errors=True)
    work.mkdir(parents=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)
    # tests may read what lies beside the checkout (REPO.parent): seen the same from the copy and its mutants/ tree
    for sibling in (p for p in ROOT.parent.iterdir() if p != ROOT):
        for place in (work.parent, work):
            if not (place / sibling.name).exists():
                (place / sibling.name).symlink_to(sibling)
    with open(work / "pyproject.toml", "a") as pyproject:
        pyproject.write(mutmut_settings(module, target))


def mutmut_settings(module: str, target: dict) -> str:
    """The [tool.mutmut] table (TOML strings written as JSON strings, which TOML accepts), with the target's own
    `mutmut` settings (e.g. process_isolation: forkserver where the tests start gRPC, as Pulumi's mocks do)."""
    def array(items: list[str]) -> str:
        return "[" + ", ".join(_toml_string(item) for item in items) + "]"
    extra = "".join(f"{key} = {_toml_string(value)}\n" for key, value in target.get("mutmut", {}).items())
    return (f"\n[tool.mutmut]\nsource_paths = {array(PACKAGES)}\nonly_mutate = {array([module])}\n"
            f"also_copy = {array(ALSO_COPY)}\npytest_add_cli_args = {array(['-p', 'no:cacheprovider', '-q'])}\n"
            f"pytest_add_cli_args_test_selection = {array(target['tests'])}\n{extra}")


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def run_mutmut(work: Path, target: dict, children: int) -> None:
    """`mutmut run` in the copy (its output to mutmut.log beside it); MutationError when it fails."""
    log = work.parent / "mutmut.log"
    with open(log, "wb") as out:
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children),
                               *target.get("functions", [])], cwd=work, stdout=out, stderr=subprocess.STDOUT)
    tail = log.read_text(errors="replace").replace("\r", "\n").strip().splitlines()[-3:]
    if done.returncode != 0 or any("failed to collect stats" in line for line in tail):
        raise MutationError(f"mutmut failed (exit {done.returncode}): {' | '.join(tail)} (whole log: {log})")


def statuses(work: Path) -> dict[str, str]:
    """Every mutant's status, from `mutmut results --all true`."""
    done = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise MutationError(f"mutmut results failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return parse_results(done.stdout)


def parse_results(text: str) -> dict[str, str]:
    found = (RESULT.match(line) for line in text.splitlines())
    return {match["name"]: match["status"].strip() for match in found if match}


def score(module: str, target: dict, children: int) -> Score:
    work = work_dir(module)
    prepare(module, target, work)
    run_mutmut(work, target, children)
    found, globs = statuses(work), target.get("functions")
    return Score(module, {n: s for n, s in found.items() if not globs or any(fnmatch.fnmatch(n, g) for g in globs)})


def report(scores: list[Score]) -> str:
    """One line per module (killed of all, the score), then each module's survivors."""
    lines = [f"{s.module:40} {s.killed:4d} of {len(s.statuses):4d} killed  {s.percent:5.1f}%  "
             f"({s.timeouts} by timeout)" for s in scores]
    for s in scores:
        lines += [f"survivors in {s.module}:"] + [f"  {survivor}" for survivor in s.survivors] if s.survivors else []
    return "\n".join(lines)

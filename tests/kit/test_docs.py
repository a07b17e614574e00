"""The docs as a reader meets them: README.md and docs/ build as a strict MkDocs site, every relative link (and
anchor) resolves, the README stays a five-minute read, and the README's lab walk-through runs as written against
a real lab (root: it starts network namespaces)."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify as mkdocs_slugify

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 250
WALK_THROUGH = "Lab walk-through"  # the README heading whose first code block is run
FENCE = re.compile(r"^ {0,3}(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
HOST_LINE = re.compile(r"^(\S+)\s+(server|agent)\s+\d+\.\d+\.\d+\.\d+$")


def unfenced_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed (links in code are not links)."""
    return [re.sub(r"`[^`]*`", "", line) for line in unfenced_lines(text)]


def headings(text: str) -> list[str]:
    """Heading texts as rendered: the text of code spans kept, emphasis and link targets dropped."""
    found = []
    for line in unfenced_lines(text):
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))
            found.append(heading.replace("`", "").replace("**", "").replace("__", ""))
    return found


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Anchors that work both on GitHub and in the MkDocs site (mkdocs' toc slugify)."""
    names = headings(page.read_text())
    return {github_slug(h) for h in names} & {mkdocs_slugify(h, "-") for h in names}


def relative_links(page: Path) -> list[str]:
    found = []
    for line in prose_lines(page.read_text()):
        found += LINK.findall(line)
        reference = REFERENCE.match(line)
        if reference:
            found.append(reference.group(1))
    return [link for link in found if not SCHEME.match(link) and not link.startswith("//")]


def code_block_after(text: str, heading: str) -> str:
    """The first fenced code block in the section under `heading` (## level)."""
    parts = re.split(rf"^## {re.escape(heading)}\s*$", text, maxsplit=1, flags=re.MULTILINE)
    assert len(parts) == 2, f"no '## {heading}' heading"
    section = re.split(r"^## ", parts[1], maxsplit=1, flags=re.MULTILINE)[0]
    block = re.search(r"^```[a-z]*\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert block, f"no code block under '## {heading}'"
    return block.group(1)


def commands_of(block: str) -> list[list[str]]:
    """Each command of a shell block as argv (comments dropped, backslash continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [argv for argv in (shlex.split(line, comments=True) for line in joined.splitlines()) if argv]


# (a) the site builds, strictly

def test_mkdocs_builds_the_site_strictly(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    for page in DOCS.glob("*.md"):
        assert (site / page.with_suffix(".html").name).is_file() or (site / page.stem / "index.html").is_file()


def test_the_nav_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"

    def pages(nav):
        for item in nav:
            value = item if isinstance(item, str) else next(iter(item.values()))
            yield from ([value] if isinstance(value, str) else pages(value))
    listed = list(pages(config["nav"]))
    assert sorted(listed) == sorted(p.name for p in DOCS.glob("*.md")), listed
    assert len(listed) == len(set(listed))


# (b) links and anchors resolve

@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    links = relative_links(page)
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file {target}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: {target.name} has no heading with the anchor #{anchor}")
    assert not broken, "\n".join(broken)


def test_the_readme_links_every_docs_page():
    linked = {Path(link.partition("#")[0]).name for link in relative_links(README) if link.startswith("docs/")}
    assert linked >= {p.name for p in DOCS.glob("*.md")}


def test_the_link_checker_sees_links_and_anchors():
    text = "# A `b` (c)\n\n[x](other.md#a-b-c) `[no](code.md)`\n```\n[no](fenced.md)\n```\n[r]: ref.md\n"
    assert headings(text) == ["A b (c)"]
    assert github_slug("A b (c)") == mkdocs_slugify("A b (c)", "-") == "a-b-c"
    assert headings("```sh\n# a comment, not a heading\n```\n## Real\n") == ["Real"]
    assert [link for line in prose_lines(text) for link in LINK.findall(line)] == ["other.md#a-b-c"]
    assert [REFERENCE.match(line).group(1) for line in prose_lines(text) if REFERENCE.match(line)] == ["ref.md"]


# (c) the README stays short; copies of tested text stay the same

def test_the_readme_is_a_five_minute_read():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


def test_the_quick_start_gives_the_two_commands():
    block = code_block_after(README.read_text(), "Quick start")
    assert [argv[:3] for argv in commands_of(block)] == [["./kit", "plan", "--env"], ["./kit", "test"]]
    assert commands_of(block)[0] == ["./kit", "plan", "--env", "dev"]


def test_the_docs_copies_of_tested_blocks_match_the_readme():
    readme = README.read_text()
    assert code_block_after(readme, WALK_THROUGH) == code_block_after((DOCS / "lab.md").read_text(), "Walk-through")
    phrase = "Invalid settings give every error at once"  # tests/kit/test_bad_input.py runs the README's copy
    readme_example = readme.split(phrase, 1)[1].split("```\n", 2)[1]
    docs_example = (DOCS / "troubleshooting.md").read_text().split(phrase, 1)[1].split("```\n", 2)[1]
    assert readme_example == docs_example


# (d) the README's walk-through, run as written against a real lab

def lab_default_out() -> str:
    """lab.up's default --out, as `./kit --help lab.up` states it."""
    done = subprocess.run([str(ROOT / "kit"), "--help", "lab.up"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    default = re.search(r"--out=\S+\s.*?\(default:\s*(\S+?)\)", " ".join(done.stdout.split()))
    assert default, done.stdout
    return default.group(1)


def lab_commands(block: str, lab_dir: Path, default_out: str) -> tuple[list[list[str]], str]:
    """The walk-through's ./kit commands with the lab's directory moved to `lab_dir` (so this test never touches
    out/lab, which a person's own lab may be using); returns them and the directory the README uses."""
    commands = commands_of(block)
    assert commands, "the walk-through has no commands"
    assert all(argv[0] == "./kit" and len(argv) > 1 for argv in commands), \
        f"every walk-through line must be a ./kit command: {commands}"
    tasks = [argv[1] for argv in commands]
    assert tasks[0] == "lab.up" and tasks[-1] == "lab.down", tasks
    assert "edge.bootstrap" in tasks and "edge.status" in tasks, tasks
    up = [a for arg in commands[0] for a in (arg.split("=", 1) if arg.startswith("--out=") else [arg])]
    out_flag = next((flag for flag in ("--out", "-o") if flag in up), None)
    readme_dir = (up[up.index(out_flag) + 1] if out_flag else default_out).rstrip("/")

    def moved(arg: str) -> str:
        option, eq, value = arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
        if value == readme_dir or value.startswith(readme_dir + "/"):
            value = str(lab_dir) + value[len(readme_dir):]
        return option + eq + value
    result = []
    for argv in commands:
        argv = [argv[0], argv[1], *map(moved, argv[2:])]
        if argv[1] in ("lab.up", "lab.down") and not any(a in ("--out", "-o") or a.startswith("--out=")
                                                          for a in argv):
            argv += ["--out", str(lab_dir)]
        if argv[1].startswith("edge."):
            site = argv[argv.index("--site") + 1] if "--site" in argv else ""
            assert site.startswith(str(lab_dir) + "/"), f"{shlex.join(argv)}: the walk-through's site is the lab's"
        result.append(argv)
    return result, readme_dir


def test_the_walk_through_command_rewriting(tmp_path):
    block = ("./kit lab.up --hosts 2   # two\n./kit edge.bootstrap --site out/lab/site.yaml \\\n"
             "    --kubeconfig=out/lab/kubeconfig\n./kit edge.status --site out/lab/site.yaml\n./kit lab.down\n")
    commands, readme_dir = lab_commands(block, tmp_path, "out/lab")
    assert readme_dir == "out/lab"
    assert commands == [
        ["./kit", "lab.up", "--hosts", "2", "--out", str(tmp_path)],
        ["./kit", "edge.bootstrap", "--site", f"{tmp_path}/site.yaml", f"--kubeconfig={tmp_path}/kubeconfig"],
        ["./kit", "edge.status", "--site", f"{tmp_path}/site.yaml"],
        ["./kit", "lab.down", "--out", str(tmp_path)],
    ]
    with pytest.raises(AssertionError):
        lab_commands("./kit lab.up\n./kit edge.bootstrap --site qa\n./kit edge.status --site qa\n./kit lab.down\n",
                     tmp_path, "out/lab")
    moved, readme_dir = lab_commands("./kit lab.up -o out/x\n./kit edge.bootstrap --site out/x/site.yaml\n"
                                     "./kit edge.status --site out/x/site.yaml\n./kit lab.down -o out/x\n",
                                     tmp_path, "out/lab")
    assert readme_dir == "out/x" and moved[0][-2:] == ["-o", str(tmp_path)] and moved[-1][-2:] == ["-o", str(tmp_path)]


@pytest.mark.timeout(1200)
def test_the_readme_walk_through_runs_against_a_real_lab(tmp_path):
    lab_dir = tmp_path / "lab"
    commands, readme_dir = lab_commands(code_block_after(README.read_text(), WALK_THROUGH), lab_dir,
                                        lab_default_out())
    home = tmp_path / "home"
    home.mkdir()
    # the kit's own state (the site's tokens, ~/.kube/config) stays in this test's directory
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "80"}

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / "kit"), *argv[1:]], capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=600)
    readme_lines = commands_of(code_block_after(README.read_text(), WALK_THROUGH))
    outputs = {}
    try:
        for readme_argv, argv in zip(readme_lines, commands):
            done = run(argv)
            assert done.returncode == 0, (f"the README's `{shlex.join(readme_argv)}` (run as `{shlex.join(argv)}`) "
                                          f"exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
            outputs.setdefault(argv[1], done.stdout)
    finally:
        if (lab_dir / "state.json").exists():  # a command failed before the README's lab.down: take it down here
            down = run(["./kit", "lab.down", "--out", str(lab_dir)])
            if (lab_dir / "state.json").exists():
                from lab import Lab  # the kit could not: the lab's own API takes it down
                Lab.load(lab_dir).down()
            assert down.returncode == 0, f"lab.down after the walk-through failed:\n{down.stdout}\n{down.stderr}"

    hosts = [m.group(1) for m in map(HOST_LINE.match, outputs["lab.up"].splitlines()) if m]
    assert hosts, outputs["lab.up"]
    status = outputs["edge.status"].splitlines()
    for host in hosts:
        assert any(line.split()[:1] == [host] and " Ready " in f"{line} " for line in status), \
            f"{host} is not Ready in edge.status:\n{outputs['edge.status']}"
    assert not (lab_dir / "state.json").exists(), "the walk-through's lab.down left the lab up"

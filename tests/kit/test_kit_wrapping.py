"""Messages on a terminal are wrapped to its width, never splitting a word (a URL stays whole); a pipe keeps one
line per message."""
import io

import yaml
from rich.console import Console
from rich.text import Text

from common.terminal import emit
from tests.kit.helpers import kit, kit_on_a_terminal
from tests.kit.test_no_traceback import site_file

LONG_URL = "https://dev.azure.com/a-very-long-organisation-name-with-hyphens"


def test_missing_options_are_one_line_each_wrapped_to_the_terminal():
    code, shown = kit_on_a_terminal("edge.bundle", columns=60)
    assert code == 2
    lines = shown.splitlines()
    assert lines and max(map(len, lines)) <= 60, lines
    starts = [line for line in lines if line.startswith("kit: ")]
    assert [s.split()[2] for s in starts] == ["--version", "--arch", "--out", "--install-sha256", "--metallb-sha256"]
    assert all(line.startswith("  ") for line in lines if not line.startswith("kit: "))


def test_a_url_is_never_split_when_an_error_is_wrapped():
    code, shown = kit_on_a_terminal("agents.cleanup", "--org", LONG_URL.replace("https", "http"), "--pool", "p",
                                    columns=50)
    assert code == 2
    lines = shown.splitlines()
    assert any(LONG_URL.replace("https", "http") in line for line in lines), lines
    assert all(len(line) <= 50 for line in lines if "://" not in line), lines


def test_help_keeps_urls_whole_and_fits_the_terminal():
    code, shown = kit_on_a_terminal("--help", "up", columns=80)
    assert code == 0
    assert "azurekeyvault://<vault>.vault.azure.net/keys/<key>" in shown
    assert max(map(len, shown.splitlines())) <= 80


def test_a_pipe_keeps_each_message_on_one_line():
    done = kit("edge.bundle")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 5



def test_an_edge_sites_warnings_are_wrapped_to_the_terminal(tmp_path):
    site = site_file(tmp_path)
    document = yaml.safe_load(site.read_text())
    document["hosts"] = [{"name": f"s{i}", "address": f"192.0.2.{10 + i}", "role": "server", "arch": "x86_64"}
                         for i in (1, 2, 3)]  # three servers and no apiEndpoint: warned before any host is reached
    document["ssh"]["connectTimeout"] = 1
    del document["bundle"]  # online: nothing to read before the hosts
    document["k3s"]["installScriptSha256"], document["metallb"]["manifestSha256"] = "a" * 64, "b" * 64
    site.write_text(yaml.safe_dump(document))
    _, shown = kit_on_a_terminal("edge.plan", "--site", str(site), columns=60)
    lines = shown.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("warning: 3 servers but no apiEndpoint"))
    assert len(lines[first]) <= 60 and lines[first + 1].startswith("  ") and len(lines[first + 1]) <= 60
    assert "set apiEndpoint to a DNS name or VIP of all servers" in " ".join(shown.split())


def test_rich_text_wraps_at_blanks_and_keeps_a_long_path_whole():
    console = Console(file=io.StringIO(), width=30)
    path = "/tmp/pytest-of-root/pytest-1615/test_diff/out/qa/plan.json"
    emit(console, Text(f"changes against {path}: 0 changed, 0 added, 0 removed"))
    emit(console, f"see {LONG_URL} for the [bold]organisation[/]")
    assert console.file.getvalue().splitlines() == ["changes against", f"{path}:", "0 changed, 0 added, 0 removed",
                                                     "see", LONG_URL, "for the organisation"]

"""The lab gets its upstream files itself (Go module zips through the Go module proxy, each checked against the
kit's h1 pin), never from beside the checkout: a fresh clone with nothing beside it brings a lab up, or exits 2
naming what is missing and how to provide it. ../shared/upstream is only the fixture the fetched files are
compared with here."""
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from infra.stack.stack_config import ROOT
from lab.releases import k3s_flags, upstream

SHARED = ROOT.parent / "shared" / "upstream"


def test_the_fetched_metallb_manifest_and_flux_operator_crds_are_the_upstream_files():
    assert upstream.metallb_manifest("v0.16.1") == (SHARED / "metallb-0.16.1" / "metallb-native.yaml").read_bytes()
    assert upstream.metallb_manifest("v0.14.9") == (SHARED / "metallb-0.14.9" / "metallb-native.yaml").read_bytes()
    shared = [p.read_bytes() for p in sorted((SHARED / "flux-operator-0.58.1").glob("*.yaml"))]
    assert upstream.flux_operator_crds("v0.58.1") == shared


def test_the_k3s_flags_come_from_k3s_source_not_the_kits_list():
    flags = upstream.k3s_flags("v1.37.2+k3s1")
    listed = json.loads((SHARED / "k3s-1.31" / "flags.json").read_text())
    for command in ("server", "agent"):
        assert set(listed[command]) <= set(flags[command]), set(listed[command]) - set(flags[command])
    assert set(flags["server"]) - set(listed["server"]) == {  # added to k3s after v1.31.4
        "etcd-s3-bucket-lookup-type", "etcd-s3-retention", "etcd-s3-session-token",
        "etcd-snapshot-reconcile-interval", "secrets-encryption-provider"}
    assert flags["source"].startswith(f"github.com/k3s-io/k3s@{upstream.K3S_SOURCE_VERSION} pkg/cli/cmds")


def test_the_extractor_reads_inline_flags_variables_and_aliases():
    sources = {"server.go": 'var ServerFlags = []cli.Flag{\n\tConfigFlag,\n\t&cli.StringFlag{\n'
                            '\t\tName: "token",\n\t\tAliases: []string{"t"},\n\t\tUsage: "a, b {c}",\n\t},\n'
                            '\t// &cli.BoolFlag{Name: "x"},\n\t&DebugFlag,\n}\n',
               "agent.go": 'func NewAgentCommand() *cli.Command {\n\treturn &cli.Command{\n\t\tFlags: []cli.Flag{\n'
                           '\t\t\tConfigFlag,\n\t\t},\n\t}\n}\n',
               "log.go": 'var (\n\tConfigFlag = &cli.StringFlag{Name: "config", Aliases: []string{"c"}}\n'
                         '\tDebugFlag = cli.BoolFlag{Name: "debug"}\n)\n'}
    assert k3s_flags.extract(sources) == {"server": ["c", "config", "debug", "t", "token"], "agent": ["c", "config"]}
    with pytest.raises(k3s_flags.FlagSourceError, match="'NodeIP' is declared nowhere"):
        k3s_flags.extract({**sources, "agent.go": sources["agent.go"].replace("ConfigFlag,", "NodeIP,")})


def test_a_zip_that_differs_from_the_pin_is_refused(tmp_path, monkeypatch):
    real = Path(upstream.module_zip(upstream.METALLB_MODULE, "v0.16.1", "test"))
    assert upstream.zip_h1(real) == upstream.PINNED[f"{upstream.METALLB_MODULE}@v0.16.1"]
    tampered = tmp_path / "v0.16.1.zip"
    with zipfile.ZipFile(real) as source, zipfile.ZipFile(tampered, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, data.replace(b"quay.io/metallb/", b"evil.example/") if name.endswith(
                "metallb-native.yaml") else data)
    fake_go = tmp_path / "bin" / "go"
    fake_go.parent.mkdir()
    fake_go.write_text(f"#!/bin/sh\necho '{json.dumps({'Zip': str(tampered)})}'\n")
    fake_go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_go.parent}:{os.environ['PATH']}")
    upstream._verified_zip.cache_clear()
    try:
        with pytest.raises(upstream.UpstreamError, match=f"{tampered} does not match the kit's pin"):
            upstream.metallb_manifest("v0.16.1")
    finally:
        upstream._verified_zip.cache_clear()


def fresh_clone(tmp_path: Path) -> Path:
    """`git clone` of this checkout with nothing beside it, its caches empty."""
    clone = tmp_path / "x" / "main"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    assert not (clone.parent / "shared").exists()
    return clone


def lab_task(clone: Path, tmp_path: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    """The clone's ./kit as it runs once its virtualenv exists (the kit's own venv: same packages), with an empty
    lab cache and HOME."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "GOMODCACHE": os.environ.get("GOMODCACHE") or str(Path.home() / "go" / "pkg" / "mod"),
           "PATH": path or os.environ["PATH"], "COLUMNS": "80"}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "common.cli", *args], cwd=clone,
                          capture_output=True, text=True, env=env, timeout=900)


def test_lab_up_from_a_fresh_clone_with_nothing_beside_it(tmp_path):
    clone = fresh_clone(tmp_path)
    out = tmp_path / "lab"
    up = lab_task(clone, tmp_path, "lab.up", "--hosts", "1", "--out", str(out))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "inventory:" in up.stdout and "Traceback" not in up.stderr
        assert (out / "bundle" / "metallb" / "v0.16.1" / "metallb-native.yaml").read_bytes() == \
            (SHARED / "metallb-0.16.1" / "metallb-native.yaml").read_bytes()
        cached = tmp_path / "home" / ".cache" / "mlops-edge-kit" / "upstream"
        assert (cached / f"k3s-flags-{upstream.K3S_SOURCE_VERSION}.json").is_file()
    finally:
        lab_task(clone, tmp_path, "lab.down", "--out", str(out))


def test_without_go_lab_up_exits_2_saying_how_to_provide_the_files(tmp_path):
    clone = fresh_clone(tmp_path)
    no_go = ":".join(d for d in os.environ["PATH"].split(":") if not (Path(d) / "go").exists())
    assert shutil.which("go", path=no_go) is None
    out = tmp_path / "lab"
    up = lab_task(clone, tmp_path, "lab.up", "--hosts", "1", "--out", str(out), path=no_go)
    assert up.returncode == 2, up.stdout + up.stderr
    text = " ".join(up.stderr.split())
    assert "Traceback" not in up.stderr
    assert f"lab.up: the k3s flag names for v1.37.2+k3s1: no `go` on PATH to fetch github.com/k3s-io/k3s@" \
           f"{upstream.K3S_SOURCE_VERSION} (the lab fetches {', '.join(upstream.PINNED)}); the lab fetches it " \
           "through the Go module proxy: install Go 1.26" in text, text
    assert not (out / "state.json").exists()


def test_a_k3s_checkout_named_by_the_environment_gives_the_flags(tmp_path, monkeypatch):
    cmds = tmp_path / "k3s" / "pkg" / "cli" / "cmds"
    cmds.mkdir(parents=True)
    files = upstream.module_files(upstream.K3S_MODULE, upstream.K3S_SOURCE_VERSION, "pkg/cli/cmds", "test")
    for name, data in files.items():
        (cmds / name).write_bytes(data.replace(b'Name:        "https-listen-port"', b'Name: "https-listen-port-v137"'))
    monkeypatch.setenv(upstream.K3S_SOURCE_ENV, str(tmp_path / "k3s"))
    flags = upstream.k3s_flags("v1.37.2+k3s1")
    assert "https-listen-port-v137" in flags["server"] and "https-listen-port" not in flags["server"]
    assert flags["source"] == f"{cmds} (${upstream.K3S_SOURCE_ENV})"
    monkeypatch.setenv(upstream.K3S_SOURCE_ENV, str(tmp_path / "nothing"))
    with pytest.raises(upstream.UpstreamError, match="no Go files .give a k3s checkout"):
        upstream.k3s_flags("v1.37.2+k3s1")

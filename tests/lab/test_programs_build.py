"""lab/programs/build.py builds each real program once per machine into a cache keyed by version and reuses it;
a module the proxy cannot serve is exit 2 with go's own words (issue 17 item 1)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.programs import build

ROOT = Path(__file__).resolve().parents[2]
FAKE_GO = """#!{python}
# a stand-in `go`: records its argv; `build` writes a binary that prints the version the build flags ask for (or,
# for programs without a version flag, carries the module version go.mod pins, which `version -m` then shows)
import json, os, re, sys, tempfile
with open(os.environ["GO_CALLS"], "a") as log:
    log.write(json.dumps(dict(argv=sys.argv[1:], nice=os.nice(0))) + "\\n")
args = sys.argv[1:]
if args[:2] == ["mod", "download"]:
    source = tempfile.mkdtemp()
    os.mkdir(os.path.join(source, "web"))
    print(json.dumps(dict(Dir=source)))
    sys.exit(0)
if args[0] == "mod":
    sys.exit(0)
if args[0] == "version":
    print(args[-1] + ": go1.26.8\\n" + open(args[-1]).read().splitlines()[1].lstrip("# "))
    sys.exit(0)
out, package = args[args.index("-o") + 1], args[-1]
flags = next(a for a in args if a.startswith("-ldflags="))
k8s = re.search(r"gitVersion=(\\S+)", flags)
pins = re.findall(r"^\\s*(\\S+) (v\\S+)", open("go.mod").read(), re.M)
module, version = max((p for p in pins if package == p[0] or package.startswith(p[0] + "/")), key=lambda p: len(p[0]))
version = os.environ.get("FAKE_RECORDED", version)
if package.endswith("kubectl"):
    text = "Client Version: " + k8s.group(1)
elif k8s:
    text = "Kubernetes " + k8s.group(1)
elif package.endswith("/kwok"):
    text = "kwok version " + version + " go1.26.8"
else:
    text = "etcd Version: " + os.environ.get("FAKE_ETCD", "3.7.0")
with open(out, "w") as binary:
    binary.write("#!/bin/sh\\n#\\tmod\\t" + module + "\\t" + version + "\\necho '" + text + "'\\n")
os.chmod(out, 0o755)
"""


@pytest.fixture
def fake_go(tmp_path, monkeypatch):
    """A recording `go` first on PATH, an empty program cache, and a copy of the tools module; returns them."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    go = bindir / "go"
    go.write_text(FAKE_GO.format(python=sys.executable))
    go.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    module = tmp_path / "module"
    module.mkdir()
    for gomod in build.MODULE_DIR.rglob("go.[ms][ou][dm]"):
        (module / gomod.parent.relative_to(build.MODULE_DIR)).mkdir(parents=True, exist_ok=True)
        shutil.copy(gomod, module / gomod.relative_to(build.MODULE_DIR))
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("GO_CALLS", str(calls))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return module, calls


def _built(calls: Path) -> list[str]:
    if not calls.exists():
        return []
    runs = [json.loads(line)["argv"] for line in calls.read_text().splitlines()]
    return [argv[-1] for argv in runs if argv[0] == "build"]


def test_first_run_builds_each_program_into_a_versioned_cache_and_a_second_run_builds_nothing(fake_go, tmp_path):
    module, calls = fake_go
    lines = []
    first = build.ensure_programs(module, lines.append, build.KUBERNETES)
    assert sorted(_built(calls)) == sorted(p.package for p in build.KUBERNETES)
    cache = tmp_path / "cache" / "mlops-edge-kit" / "programs"
    assert first == {"etcd": cache / "etcd-v3.7.0" / "etcd", "kubectl": cache / "kubectl-v1.37.2" / "kubectl",
                     "kube-apiserver": cache / "kube-apiserver-v1.37.2" / "kube-apiserver",
                     "kube-controller-manager": cache / "kube-controller-manager-v1.37.2" / "kube-controller-manager"}
    assert any("kube-apiserver v1.37.2" in line and "cold build takes about 5 min" in line for line in lines)
    calls.unlink()
    lines.clear()
    assert build.ensure_programs(module, lines.append, build.KUBERNETES) == first
    assert _built(calls) == [] and lines == []


def test_the_build_runs_niced_with_the_version_ldflags(fake_go):
    module, calls = fake_go
    build.ensure_programs(module, lambda _: None, build.KUBERNETES)
    runs = {json.loads(line)["argv"][-1]: json.loads(line) for line in calls.read_text().splitlines()
            if json.loads(line)["argv"][0] == "build"}
    apiserver = runs["k8s.io/kubernetes/cmd/kube-apiserver"]
    assert apiserver["nice"] == os.nice(0) + 10
    assert apiserver["argv"][:2] == ["build", "-mod=readonly"] and "-trimpath" in apiserver["argv"]
    flags = next(a for a in apiserver["argv"] if a.startswith("-ldflags="))
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in flags
    assert "gitMajor=1" in flags and "gitMinor=37" in flags
    assert "gitVersion" not in next(a for a in runs["go.etcd.io/etcd/server/v3"]["argv"] if a.startswith("-ldflags="))


def test_a_changed_go_sum_rebuilds_and_a_new_pin_builds_beside_the_old(fake_go, tmp_path, monkeypatch):
    module, calls = fake_go
    first = build.ensure_programs(module, lambda _: None, build.KUBERNETES)
    calls.unlink()
    with open(module / "go.sum", "a") as gosum:
        gosum.write("example.com/extra v1.0.0 h1:AAAA=\n")
    build.ensure_programs(module, lambda _: None, build.KUBERNETES)
    assert len(_built(calls)) == len(build.KUBERNETES)
    calls.unlink()
    gomod = module / "go.mod"
    gomod.write_text(gomod.read_text().replace("go.etcd.io/etcd/server/v3 v3.7.0", "go.etcd.io/etcd/server/v3 v3.7.1"))
    monkeypatch.setenv("FAKE_ETCD", "3.7.1")
    second = build.ensure_programs(module, lambda _: None, build.KUBERNETES)
    assert _built(calls) == ["go.etcd.io/etcd/server/v3"]
    assert second["etcd"].parent.name == "etcd-v3.7.1" and first["etcd"].is_file()


def test_a_binary_that_reports_another_version_is_refused_and_not_cached(fake_go, tmp_path, monkeypatch):
    module, _ = fake_go
    monkeypatch.setenv("FAKE_ETCD", "3.6.0")
    with pytest.raises(build.BuildError) as err:
        build.ensure_programs(module, lambda _: None, build.KUBERNETES)
    assert "'etcd Version: 3.6.0'" in str(err.value) and "not 'Version: 3.7.0'" in str(err.value)
    etcd_dir = tmp_path / "cache" / "mlops-edge-kit" / "programs" / "etcd-v3.7.0"
    assert not (etcd_dir / "etcd").exists() and not (etcd_dir / ".stamp.json").exists()


def test_the_flux_programs_are_checked_by_their_build_info_and_the_operator_built_from_a_stub_copy(fake_go):
    module, calls = fake_go
    paths = build.ensure_programs(module, lambda _: None, build.FLUX)
    runs = [json.loads(line)["argv"] for line in calls.read_text().splitlines()]
    assert ["mod", "download", "-json", "github.com/controlplaneio-fluxcd/flux-operator@v0.58.1"] in runs
    stage = paths["flux-operator"].with_name("module")
    assert (stage / "src" / "web" / "dist" / "index.html").is_file() and (stage / "go.sum").is_file()
    assert ["mod", "edit", "-replace=github.com/controlplaneio-fluxcd/flux-operator=./src"] in runs
    assert sum(argv[:2] == ["version", "-m"] for argv in runs) == 4


def test_a_flux_binary_recording_another_version_is_refused(fake_go, monkeypatch):
    module, _ = fake_go
    monkeypatch.setenv("FAKE_RECORDED", "v1.9.0")
    with pytest.raises(build.BuildError, match=r"not 'github.com/fluxcd/kustomize-controller\\tv1.9.4'"):
        build.ensure_programs(module, lambda _: None, build.FLUX[2:3])
    assert not build.binary_path(build.FLUX[2], module).exists()


def test_kit_test_builds_the_programs_before_pytest_runs(fake_go, tmp_path):
    """`./kit test` (what .ci/run calls) on a machine without the builds: they are made first, then pytest runs."""
    _, calls = fake_go
    done = subprocess.run(["./kit", "test", "-k", "zz_selects_no_test_zz"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert sorted(_built(calls)) == sorted(p.package for p in build.PROGRAMS), done.stderr
    assert all(build.binary_path(p).is_file() for p in build.PROGRAMS)  # in this test's XDG_CACHE_HOME
    assert "lab programs: building etcd" in done.stderr and "deselected" in done.stdout


def test_a_full_disk_says_so(fake_go, tmp_path):
    module, _ = fake_go
    go = tmp_path / "bin" / "go"
    go.write_text("#!/bin/sh\necho 'go: writing stat cache: write /root/.cache/go-build/x: no space left on device' >&2\n"
                  "exit 1\n")
    with pytest.raises(build.BuildError) as err:
        build.ensure_programs(module, lambda _: None, build.KUBERNETES)
    assert "no space left on device" in str(err.value) and "the disk is full" in str(err.value)


def _module_pinning(tmp_path: Path, etcd: str, in_go_sum: bool) -> Path:
    """A temp copy of the tools module whose etcd pin is `etcd` (also in go.sum if asked, hashes then wrong)."""
    module = tmp_path / "module"
    module.mkdir()
    for name in ("go.mod", "go.sum"):
        text = (build.MODULE_DIR / name).read_text()
        if name == "go.mod" or in_go_sum:
            text = text.replace("go.etcd.io/etcd/server/v3 v3.7.0", f"go.etcd.io/etcd/server/v3 {etcd}")
        (module / name).write_text(text)
    return module


def test_a_version_the_proxy_cannot_serve_is_go_s_own_error(tmp_path, monkeypatch):
    """Real go, a temp copy of the module pinning an etcd that no module cache holds, no proxy."""
    module = _module_pinning(tmp_path, "v3.7.99", in_go_sum=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GOPROXY", "off")
    with pytest.raises(build.BuildError) as err:
        build.ensure_program(build.PROGRAMS[0], module, lambda _: None)
    text = str(err.value)
    assert "go: downloading go.etcd.io/etcd/server/v3 v3.7.99\nmodule lookup disabled by GOPROXY=off" in text
    assert "the Go module proxy could not serve a module" in text
    assert not list((tmp_path / "cache").rglob("etcd"))


def test_a_version_the_real_proxy_does_not_serve_is_its_refusal(tmp_path, monkeypatch):
    module = _module_pinning(tmp_path, "v3.7.99", in_go_sum=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GOPROXY", "https://proxy.golang.org")
    with pytest.raises(build.BuildError) as err:
        build.ensure_program(build.PROGRAMS[0], module, lambda _: None)
    assert "v3.7.99.zip: 403 Forbidden\n\tserver response: This module version is not available." in str(err.value)
    assert "the Go module proxy could not serve a module" in str(err.value)


def test_a_pin_go_sum_lacks_says_to_tidy(tmp_path, monkeypatch):
    module = _module_pinning(tmp_path, "v3.7.99", in_go_sum=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(build.BuildError) as err:
        build.ensure_program(build.PROGRAMS[0], module, lambda _: None)
    assert "missing go.sum entry" in str(err.value) and "run `go mod tidy` in that module" in str(err.value)


def test_kit_lab_programs_exits_2_with_go_s_error_when_no_module_can_be_fetched(tmp_path):
    """A fresh machine (empty program cache and module cache) whose proxy is unreachable."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), GOMODCACHE=str(tmp_path / "gomod"),
               GOPROXY="off")
    done = subprocess.run(["./kit", "lab.programs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "lab.programs: go build of etcd v3.7.0 failed" in done.stderr
    assert "module lookup disabled by GOPROXY=off" in done.stderr
    assert "check GOPROXY" in done.stderr and "Traceback" not in done.stderr


def test_the_built_programs_report_the_pinned_versions_and_are_reused():
    """The real builds (./kit test makes them before pytest; warm, this only checks the stamps)."""
    mod = json.loads(subprocess.run(["go", "mod", "edit", "-json"], cwd=build.MODULE_DIR, check=True,
                                    capture_output=True, text=True).stdout)
    pins = {r["Path"]: r["Version"] for r in mod["Require"]}
    paths = build.ensure_programs(programs=build.KUBERNETES)
    mtimes = {name: path.stat().st_mtime_ns for name, path in paths.items()}
    k8s, etcd = pins["k8s.io/kubernetes"], pins["go.etcd.io/etcd/server/v3"]

    def first_line(*argv):
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()[0]

    assert first_line(paths["kube-apiserver"], "--version") == f"Kubernetes {k8s}"
    assert first_line(paths["kube-controller-manager"], "--version") == f"Kubernetes {k8s}"
    assert first_line(paths["kubectl"], "version", "--client") == f"Client Version: {k8s}"
    assert first_line(paths["etcd"], "--version") == f"etcd Version: {etcd.lstrip('v')}"
    assert all(f"-{pins[p.module]}" in str(paths[p.name].parent) for p in build.KUBERNETES)
    assert {n: p.stat().st_mtime_ns for n, p in build.ensure_programs(programs=build.KUBERNETES).items()} == mtimes


def test_the_node_programs_report_their_pinned_versions():
    """kube-scheduler at the Kubernetes pin, kwok at its own module's (real builds, warm: only the stamps)."""
    paths = build.ensure_programs(programs=build.NODES)
    k8s, kwok = (build.pinned_version(p) for p in build.NODES)
    scheduler = subprocess.run([paths["kube-scheduler"], "--version"], capture_output=True, text=True, check=True)
    assert scheduler.stdout.splitlines()[0] == f"Kubernetes {k8s}" and k8s == "v1.37.2"
    shown = subprocess.run([paths["kwok"], "--version"], capture_output=True, text=True, check=True)
    assert shown.stdout.startswith(f"kwok version {kwok} ") and kwok == "v0.8.0"

"""The Flux Operator and the Flux controllers are built from their own tools modules under lab/programs/flux at the
pinned versions, and Go's record in each binary says so (they have no version flag) (issue 17 item 5)."""
import json
import subprocess

from lab.programs import build

PINS = {"flux-operator": ("github.com/controlplaneio-fluxcd/flux-operator", "v0.58.1"),
        "source-controller": ("github.com/fluxcd/source-controller", "v1.9.1"),
        "kustomize-controller": ("github.com/fluxcd/kustomize-controller", "v1.9.4"),
        "notification-controller": ("github.com/fluxcd/notification-controller", "v1.9.3")}


def _mod(name: str) -> dict:
    out = subprocess.run(["go", "mod", "edit", "-json"], cwd=build.MODULE_DIR / "flux" / name, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def _build_info(path) -> list[list[str]]:
    out = subprocess.run(["go", "version", "-m", str(path)], check=True, capture_output=True, text=True).stdout
    return [line.strip().split("\t") for line in out.splitlines()[1:]]


def test_each_flux_module_pins_one_program_at_its_version():
    for name, (module, version) in PINS.items():
        mod = _mod(name)
        assert [t["Path"] for t in mod["Tool"]] == [next(p.package for p in build.FLUX if p.name == name)]
        assert {r["Path"]: r["Version"] for r in mod["Require"]}[module] == version, name
        assert not [r for r in mod.get("Replace") or [] if "Version" not in r["New"]], "no local replace committed"


def test_the_operator_replaces_the_one_module_the_proxy_does_not_serve():
    replaces = {r["Old"]["Path"]: r["New"]["Version"] for r in _mod("flux-operator")["Replace"]}
    assert replaces == {"github.com/google/go-containerregistry/pkg/authn/kubernetes":
                        "v0.0.0-20260224031529-85f2bf5f7303"}


def test_the_built_flux_programs_carry_their_pinned_versions():
    paths = build.ensure_programs(programs=build.FLUX)
    for name, (module, version) in PINS.items():
        info = _build_info(paths[name])
        assert ["mod", module, version] == info[1][:3], (name, info[:3])
        assert paths[name].parent.name == f"{name}-{version}"


def test_the_operator_is_built_from_a_copy_with_a_stub_ui():
    binary = build.ensure_programs(programs=build.FLUX[:1])["flux-operator"]
    stage = binary.with_name("module")
    assert (stage / "src" / "web" / "dist" / "index.html").is_file()
    assert (stage / "src" / "config" / "data").is_dir()  # the Flux manifests the operator installs at run time
    replaced = json.loads(subprocess.run(["go", "mod", "edit", "-json"], cwd=stage, check=True, capture_output=True,
                                         text=True).stdout)["Replace"]
    assert {"Path": "./src"} in [r["New"] for r in replaced]
    assert not (build.MODULE_DIR / "flux" / "flux-operator" / "src").exists()  # nothing upstream in the checkout

"""Fleet delivery on a lab site (1 server + 1 agent) from the lab's bundle: the first server gets the Flux Operator's
install.yaml and the site's on-site manifest in k3s's auto-deploy directory (0600, every object valid under the
upstream CRDs, strict), every node the Flux images archive, imported pinned; re-runs change nothing until the
site's token changes; the tokens never show in argv or output; bad fleet input is exit 2 before anything runs.

The stand-in k3s does not run Flux: what it would apply is checked as files."""
import base64
import hashlib
import json
import re
import shutil

import kubernetes_validate
import pytest
import yaml

from fleet import onsite
from fleet.config import load_fleet
from fleet.flux import FLUX_OPERATOR_VERSION
from fleet.receiving.keys import site_key
from fleet.render import K8S_VERSION, render_env, write_env
from lab.lifecycle.inventory import K3S_VERSION, METALLB_VERSION
from lab.releases.artifacts import serve_directory
from lab.releases.images import flux_repositories
from tests.fleet import crds

from helpers import json_result, kit, lab_site
from lab_checks import ArgvSampler, host_file, mode

SHARED_STATE = True  # one kit state for the module: re-runs keep the site's tokens, as on an operator's machine

SITE, ENV = "plant-berlin", "production"
REGISTRY = load_fleet().environments[ENV].registry  # its stack's registryLoginServer
MANIFESTS = "/var/lib/rancher/k3s/server/manifests"
FLUX_IMAGES = "/var/lib/rancher/k3s/agent/images/flux-images-amd64.tar"
HOSTS = ("edge-1", "edge-2")


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=2, servers=1)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """fleet.render's output of the shipped seeds' production env (model files stand in by digest)."""
    out = tmp_path_factory.mktemp("rendered") / ENV
    fleet = load_fleet()
    write_env(render_env(fleet, ENV, {"6": "sha256:" + "6" * 64, "7": "sha256:" + "7" * 64}), out)
    return out


@pytest.fixture(scope="module")
def site(lab, rendered, state):
    return lab_site(lab, state, "fleet-site.yaml",
                    fleet={"env": ENV, "rendered": str(rendered / SITE), "notifyTokenEnv": "FLEET_NOTIFY_TOKEN"},
                    registries={"credentials": {"env": "FLEET_REGISTRY_CREDENTIAL"}})


MASTER = "notify-master-Vq3hX8-0123456789abcdef"  # the env's master report key (>= 32 bytes): never on the site


def secrets_env(token: str, notify: str = MASTER) -> dict:
    credential = {"server": REGISTRY, "username": SITE, "password": token}
    return {"FLEET_REGISTRY_CREDENTIAL": json.dumps(credential), "FLEET_NOTIFY_TOKEN": notify}


def bootstrap(site, state, env: dict):
    done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(state / "kubeconfig"), env=env)
    return done, json_result(done) if done.returncode in (0, 1) else {}


def manifest_docs(lab) -> list[dict]:
    return list(yaml.safe_load_all(host_file(lab, "edge-1", f"{MANIFESTS}/mlops-fleet.yaml").read_text()))


def test_the_first_server_gets_flux_in_its_auto_deploy_dir_and_every_node_the_images(lab, site, state):
    token, notify = "site-token-Rk29vQ", MASTER
    with ArgvSampler(lab) as argvs:
        done, hosts = bootstrap(site, state, secrets_env(token, notify))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fleet" in hosts["edge-1"]["changed"] and "fleet" not in hosts["edge-2"]["changed"]
    assert mode(lab, "edge-1", f"{MANIFESTS}/mlops-fleet.yaml") == 0o600
    assert mode(lab, "edge-1", f"{MANIFESTS}/flux-operator.yaml") == 0o600
    bundle = lab.bundle / "flux-operator" / FLUX_OPERATOR_VERSION
    assert host_file(lab, "edge-1", f"{MANIFESTS}/flux-operator.yaml").read_bytes() == \
        (bundle / "install.yaml").read_bytes()
    docs = manifest_docs(lab)
    assert [d["kind"] for d in docs[:4]] == ["Namespace", "FluxInstance", "Secret", "Secret"]
    for doc in docs:
        if doc["apiVersion"] == "v1":
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        else:
            crds.validate(doc)  # strict, against ../shared/upstream's CRDs
    pull = json.loads(base64.b64decode(docs[2]["data"][".dockerconfigjson"]))["auths"][REGISTRY]
    assert (pull["username"], pull["password"]) == (SITE, token)
    # generic-hmac to the stack's receiver: the site's own key, derived from the master (fleet/receiving/keys.py)
    assert base64.b64decode(docs[3]["data"]["token"]).decode() == site_key(notify.encode(), 1, ENV, SITE)
    assert {d["metadata"]["labels"]["fleet.mlops-edge-kit/site"] for d in docs[4:]} == {SITE}
    for secret in (token, notify):
        assert not [a for a in argvs.seen if secret in a]
        assert secret not in done.stdout + done.stderr
        assert secret not in host_file(lab, "edge-1", f"{MANIFESTS}/mlops-fleet.yaml").read_text()  # base64 only
    archive = (bundle / "flux-images-amd64.tar").read_bytes()
    pinned = {r.reference: r.pinned.split("@")[1] for r in flux_repositories()}
    for name in HOSTS:
        assert host_file(lab, name, FLUX_IMAGES).read_bytes() == archive
        listed = lab.exec(name, "k3s ctr -n k8s.io images ls").stdout
        for image in onsite.image_names():
            line = next(line for line in listed.splitlines() if line.startswith(image + "\t"))
            assert pinned[image] in line and "io.cri-containerd.pinned=pinned" in line  # the index, pinned


def test_a_rerun_changes_nothing_and_a_rotated_token_rewrites_the_manifest_not_install_yaml(lab, site, state):
    env = secrets_env("site-token-Rk29vQ")
    if not host_file(lab, "edge-1", f"{MANIFESTS}/mlops-fleet.yaml").exists():
        assert bootstrap(site, state, env)[0].returncode == 0
    done, hosts = bootstrap(site, state, env)
    assert done.returncode == 0, done.stderr
    assert {n: h["status"] for n, h in hosts.items()} == dict.fromkeys(HOSTS, "ok")
    before = host_file(lab, "edge-1", f"{MANIFESTS}/flux-operator.yaml").stat().st_mtime_ns
    done, hosts = bootstrap(site, state, secrets_env("site-token-rotated-M4t"))
    assert done.returncode == 0, done.stderr
    assert "fleet" in hosts["edge-1"]["changed"]  # (registries.yaml carries the token too: edge_hosts/inventory/registries.py)
    pull = json.loads(base64.b64decode(manifest_docs(lab)[2]["data"][".dockerconfigjson"]))["auths"][REGISTRY]
    assert pull["password"] == "site-token-rotated-M4t"
    assert host_file(lab, "edge-1", f"{MANIFESTS}/flux-operator.yaml").stat().st_mtime_ns == before


def test_bad_fleet_input_is_exit_2_naming_every_problem_before_anything_runs(lab, rendered, state, tmp_path):
    site = lab_site(lab, tmp_path, fleet={"env": "qa", "rendered": str(rendered / SITE)},
                    registries={"credentials": {"env": "FLEET_REGISTRY_CREDENTIAL"}})
    credential = {"server": "other.azurecr.io", "username": SITE, "password": "site-token-Zq1"}
    done = kit("edge.bootstrap", "--site", str(site), "--json",
               env={"FLEET_REGISTRY_CREDENTIAL": json.dumps(credential)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"fleet.rendered: {rendered / SITE / 'flux.yaml'} is site {SITE} of env {ENV}, not site {SITE} of env qa" \
        in done.stderr
    assert f"registries.credentials: the credential is for other.azurecr.io, the site's Flux pulls from {REGISTRY}" \
        in done.stderr
    assert "fleet.notifyTokenEnv: required: the site's Provider is generic-hmac" in done.stderr
    assert "site-token-Zq1" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert re.search(r"^" + re.escape(str(site)) + ": ", done.stderr, re.M)  # the file named


def test_a_bundle_without_flux_is_refused_for_a_fleet_site(lab, site, state, tmp_path):
    bundle = tmp_path / "bundle"
    manifest = json.loads((lab.bundle / "manifest.json").read_text())
    manifest.pop("flux_operator")
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    document = yaml.safe_load(site.read_text())
    document["bundle"] = str(bundle)
    other = tmp_path / "site.yaml"
    other.write_text(yaml.safe_dump(document))
    done = kit("edge.bootstrap", "--site", str(other), env=secrets_env("site-token-Rk29vQ"))
    assert done.returncode == 2
    assert f"holds flux_operator None, the site pins {FLUX_OPERATOR_VERSION}" in done.stderr


def mirror_of(bundle, root):
    """The release and raw paths an online host downloads from, holding the lab bundle's own files (so k3s itself
    does not change) and the Flux Operator release."""
    release = root / f"k3s-io/k3s/releases/download/{K3S_VERSION}"
    shutil.copytree(bundle / "k3s" / K3S_VERSION, release)
    (root / f"k3s-io/k3s/{K3S_VERSION}").mkdir(parents=True)
    shutil.move(release / "install.sh", root / f"k3s-io/k3s/{K3S_VERSION}/install.sh")
    manifests = root / f"metallb/metallb/{METALLB_VERSION}/config/manifests"
    manifests.mkdir(parents=True)
    shutil.copy(bundle / f"metallb/{METALLB_VERSION}/metallb-native.yaml", manifests)
    flux = root / f"controlplaneio-fluxcd/flux-operator/releases/download/{FLUX_OPERATOR_VERSION}"
    shutil.copytree(bundle / "flux-operator" / FLUX_OPERATOR_VERSION, flux)
    return flux


def test_an_online_fleet_site_downloads_install_yaml_verified_against_the_release_checksums(lab, site, state,
                                                                                            tmp_path):
    flux = mirror_of(lab.bundle, tmp_path / "mirror")
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
           for p in (tmp_path / "mirror").rglob("*") if p.name in ("install.sh", "metallb-native.yaml")}
    document = yaml.safe_load(site.read_text())
    document["k3s"]["installScriptSha256"], document["metallb"]["manifestSha256"] = \
        sha["install.sh"], sha["metallb-native.yaml"]
    document["bundle"] = None
    lab.exec("edge-1", f"rm -f {MANIFESTS}/flux-operator.yaml")
    with serve_directory(tmp_path / "mirror", host=lab.gateway) as url:
        document["downloads"] = {"mirror": url, "raw": url}
        online = tmp_path / "online.yaml"
        online.write_text(yaml.safe_dump(document))
        done, hosts = bootstrap(online, state, secrets_env("site-token-Rk29vQ"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "fleet" in hosts["edge-1"]["changed"]
        assert not [n for n in HOSTS if "artifacts" in hosts[n]["changed"]]  # the same k3s: nothing else fetched
        assert host_file(lab, "edge-1", f"{MANIFESTS}/flux-operator.yaml").read_bytes() == \
            (flux / "install.yaml").read_bytes()
        assert mode(lab, "edge-1", f"{MANIFESTS}/flux-operator.yaml") == 0o600
        (flux / "install.yaml").write_bytes((flux / "install.yaml").read_bytes() + b"# changed upstream\n")
        lab.exec("edge-1", f"rm -f {MANIFESTS}/flux-operator.yaml")
        done, hosts = bootstrap(online, state, secrets_env("site-token-Rk29vQ"))
    assert done.returncode == 1 and "sha256 mismatch for" in hosts["edge-1"]["error"]
    assert not host_file(lab, "edge-1", f"{MANIFESTS}/flux-operator.yaml").exists()


def test_behind_the_sites_proxy_the_flux_controllers_get_it_from_the_private_manifest(lab, site, state, tmp_path):
    password = "fleet-proxy-Pw4"
    url = f"http://kit:{password}@{lab.gateway}:3128"
    document = yaml.safe_load(site.read_text())
    document["proxy"] = {"http": url, "https": url, "noProxy": [".plant.example"]}
    proxied = tmp_path / "proxied.yaml"
    proxied.write_text(yaml.safe_dump(document))
    with ArgvSampler(lab) as argvs:
        done, hosts = bootstrap(proxied, state, secrets_env("site-token-Rk29vQ"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fleet" in hosts["edge-1"]["changed"]
    assert mode(lab, "edge-1", f"{MANIFESTS}/mlops-fleet.yaml") == 0o600
    docs = manifest_docs(lab)
    instance = docs[1]
    crds.validate(instance)  # strict, against the FluxInstance CRD
    (patch,) = instance["spec"]["kustomize"]["patches"]
    manager = yaml.safe_load(patch["patch"])["spec"]["template"]["spec"]["containers"][0]
    assert patch["target"] == {"kind": "Deployment"}
    assert manager == {"name": "manager", "envFrom": [{"secretRef": {"name": onsite.PROXY_SECRET}}]}
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == onsite.PROXY_SECRET)
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    env = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == url
    assert env["NO_PROXY"].split(",")[-4:] == [".plant.example", ".cluster.local.", ".cluster.local", ".svc"]
    assert password not in host_file(lab, "edge-1", f"{MANIFESTS}/mlops-fleet.yaml").read_text()  # base64 only
    assert not [a for a in argvs.seen if password in a] and password not in done.stdout + done.stderr

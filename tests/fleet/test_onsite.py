"""The k3s auto-deploy manifest a site's first server gets: valid objects, the token only inside its Secret, 0600."""
import base64
import json
import stat

import kubernetes_validate
import yaml

from fleet import onsite
from fleet.flux import FLUX_VERSION
from fleet.render import K8S_VERSION, merge
from tests.fleet import crds, operator
from tests.fleet.test_render import _render


def test_the_auto_deploy_manifest_is_valid_and_private(seeds, tmp_path):
    _, rendered = _render(seeds, "production")
    token = "site-token-Zq8"
    secrets = onsite.site_secrets("crmlopsprod.azurecr.io", "plant-berlin", token, "notify-Zq9")
    text = onsite.auto_deploy_manifest(rendered[0].flux_objects, secrets)
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs[:4]] == ["Namespace", "FluxInstance", "Secret", "Secret"]
    for doc in docs:
        if doc["apiVersion"] == "v1":
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        else:
            crds.validate(doc)
    assert token not in text and "notify-Zq9" not in text  # only base64 inside the Secrets
    config = json.loads(base64.b64decode(docs[2]["data"][".dockerconfigjson"]))
    entry = config["auths"]["crmlopsprod.azurecr.io"]
    assert (entry["username"], entry["password"]) == ("plant-berlin", token)
    assert base64.b64decode(entry["auth"]).decode() == f"plant-berlin:{token}"
    path = onsite.write_auto_deploy(tmp_path, text)
    assert path.name == "mlops-fleet.yaml" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert docs[1]["spec"]["distribution"]["version"] == "2.9.4"


def test_a_generic_provider_gets_its_address_and_no_empty_token():
    secrets = onsite.site_secrets("crmlopsqa.azurecr.io", "qa-line", "site-token", "", "https://receiver.example/hook")
    notify = secrets[1]
    assert notify["metadata"]["name"] == "fleet-notify" and set(notify["data"]) == {"address"}
    assert base64.b64decode(notify["data"]["address"]).decode() == "https://receiver.example/hook"


def test_the_flux_images_are_named_by_tag_and_pulled_by_the_operators_own_digests():
    references = onsite.image_references("sha256:" + "a" * 64)
    assert references[0] == f"ghcr.io/controlplaneio-fluxcd/flux-operator:v0.58.1@sha256:{'a' * 64}"
    assert references[1:] == [f"{name}@{digest}" for name, digest in onsite.FLUX_IMAGES.items()]
    assert onsite.image_names() == [r.split("@")[0] for r in references]


def test_behind_a_proxy_every_flux_controller_gets_it_from_a_secret_never_in_plain_text(tmp_path):
    password = "pr0xy-Pw7"
    url = f"http://kit:{password}@10.8.0.1:3128"
    variables = {"HTTP_PROXY": url, "HTTPS_PROXY": url,
                 "NO_PROXY": "localhost,127.0.0.1,10.42.0.0/16,10.43.0.0/16"}
    secrets = [*onsite.site_secrets("crmlopsprod.azurecr.io", "plant-berlin", "tok", "notify"),
               onsite.proxy_secret(variables)]
    text = onsite.auto_deploy_manifest([], secrets)
    docs = list(yaml.safe_load_all(text))
    instance, proxy = docs[1], docs[4]
    crds.validate(instance)  # strict, the FluxInstance CRD of v0.58.1
    kubernetes_validate.validate(proxy, K8S_VERSION, strict=True)
    env = {k: base64.b64decode(v).decode() for k, v in proxy["data"].items()}
    assert env["HTTPS_PROXY"] == variables["HTTPS_PROXY"] and env["HTTP_PROXY"] == variables["HTTP_PROXY"]
    assert env["NO_PROXY"] == variables["NO_PROXY"] + ",.cluster.local.,.cluster.local,.svc"
    assert password not in text  # only base64 inside the Secret: the FluxInstance names the Secret
    (patch,) = instance["spec"]["kustomize"]["patches"]
    assert patch["target"] == {"kind": "Deployment"}
    # the patch applied (strategic merge: containers by name) to each controller the operator deploys
    data = operator.module_dir() / "config" / "data" / "flux" / FLUX_VERSION
    for controller in instance["spec"]["components"]:
        deployment = next(d for d in yaml.safe_load_all((data / f"{controller}.yaml").read_text())
                          if d and d["kind"] == "Deployment")
        patched = merge(deployment, {"spec": yaml.safe_load(patch["patch"])["spec"]})
        container = next(c for c in patched["spec"]["template"]["spec"]["containers"] if c["name"] == "manager")
        assert container["envFrom"] == [{"secretRef": {"name": onsite.PROXY_SECRET}}], controller
        assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        kubernetes_validate.validate(patched, K8S_VERSION, strict=True)
    path = onsite.write_auto_deploy(tmp_path, text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_without_a_proxy_the_flux_instance_is_not_patched():
    text = onsite.auto_deploy_manifest([], onsite.site_secrets("r.example", "s", "tok", "notify"))
    assert "kustomize" not in list(yaml.safe_load_all(text))[1]["spec"]

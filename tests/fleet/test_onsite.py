"""The k3s auto-deploy manifest a site's first server gets: valid objects, the token only inside its Secret, 0600."""
import base64
import json
import stat

import kubernetes_validate
import yaml

from fleet import onsite
from fleet.render import K8S_VERSION
from tests.fleet import crds
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

"""Issue 18 item 6: fleet.receive deployed on AKS by the real program with each stack's real config (mock runtime):
only where the stack enables it; for the shipped stacks (no VPN or ExpressRoute) a public load balancer under an
Azure DNS name, open only to the sites' egress addresses; an internal one at a fixed IP for sites joined to the VNET;
a locked-down single-writer pod; a registry token for fleet-status/<env> only; secrets never plain; objects
schema-valid (strict); bad settings exit 2."""
import json

import kubernetes_validate
import pytest
import yaml

from fleet.receiving.store import status_repository
from infra.offline import plan
from infra.components import fleet_receiver
from infra.stack.stack_config import ROOT
from tests.infra.conftest import ENVS, expect_problems, settings_of
from tests.infra.test_bad_settings import problems_for
from tests.kit.helpers import kit

ENABLED = {"qa": ("qa", "mlk-fleet-qa"), "prod": ("production", "mlk-fleet-production")}  # stack -> (env, DNS label)
K8S_TYPES = ("kubernetes:core/v1:", "kubernetes:apps/v1:", "kubernetes:networking.k8s.io/v1:")
MASTER, CERT, KEY = "master-report-key-Q7v2-do-not-leak-0123456789", "cert-pem-Zt4x", "key-pem-Wm8c"


def receiver_objects(rec) -> dict[str, dict]:
    """kind -> the receiver's Kubernetes object (inputs as the provider would send them)."""
    return {r.inputs["kind"]: r.inputs for r in rec.resources
            if r.type.startswith(K8S_TYPES) and r.name.startswith("fleet-receiver-")}


def egress(env: str) -> list[str]:
    config = yaml.safe_load((ROOT / f"Pulumi.{env}.yaml").read_text())["config"]
    return [ip for site in config["mlops-edge-kit:registry"]["edgeSites"] for ip in site["egressIps"]]


@pytest.mark.parametrize("env", ENVS)
def test_the_receiver_exists_only_where_the_stack_enables_it(recordings, env):
    rec = recordings[env]
    components = [r for r in rec.resources if r.type == "mlops:infra:FleetReceiver"]
    if env in ENABLED:
        assert len(components) == 1
        assert set(receiver_objects(rec)) == {"Namespace", "ServiceAccount", "Secret", "Deployment", "Service",
                                              "NetworkPolicy"}
        assert rec.outputs["fleetReceiverAddress"] == f"https://{ENABLED[env][1]}.westeurope.cloudapp.azure.com:8443"
    else:
        assert components == [] and receiver_objects(rec) == {} and "fleetReceiverAddress" not in rec.outputs


@pytest.mark.parametrize("env", sorted(ENABLED))
def test_the_shipped_service_is_a_public_load_balancer_named_by_dns_open_only_to_the_sites(recordings, env):
    """No VPN or ExpressRoute in the shipped stacks: the sites reach a public load balancer, and only they do."""
    service = receiver_objects(recordings[env])["Service"]
    assert service["metadata"]["annotations"] == {"service.beta.kubernetes.io/azure-dns-label-name": ENABLED[env][1]}
    spec = service["spec"]
    assert spec["type"] == "LoadBalancer" and spec["externalTrafficPolicy"] == "Local"
    assert spec["loadBalancerSourceRanges"] == egress(env) and "loadBalancerIP" not in spec
    assert spec["ports"] == [{"name": "https", "port": 8443, "protocol": "TCP", "targetPort": "https"}]
    assert spec["selector"] == {"app.kubernetes.io/name": "fleet-receiver"}


def internal_stack(tmp_path, **receiver) -> str:
    """A project dir holding Pulumi.prod.yaml with its receiver internal at 10.40.15.250 (and `receiver` set)."""
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    document["config"]["mlops-edge-kit:fleetReceiver"] |= {"exposure": "internal", "loadBalancerIp": "10.40.15.250",
                                                           **receiver}
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document))
    return "prod"


def test_an_internal_receiver_is_an_internal_load_balancer_at_the_fixed_ip_keeping_the_sites_addresses(tmp_path):
    rec = plan.record_env(internal_stack(tmp_path), root=tmp_path)
    objects = receiver_objects(rec)
    service = objects["Service"]
    assert service["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/azure-load-balancer-internal": "true",
        "service.beta.kubernetes.io/azure-load-balancer-ipv4": "10.40.15.250"}
    spec = service["spec"]
    assert spec["type"] == "LoadBalancer" and spec["externalTrafficPolicy"] == "Local"
    assert "loadBalancerSourceRanges" not in spec
    assert spec["ports"] == [{"name": "https", "port": 8443, "protocol": "TCP", "targetPort": "https"}]
    assert objects["NetworkPolicy"]["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "203.0.113.40/32"}}]
    assert rec.outputs["fleetReceiverAddress"] == "https://10.40.15.250:8443"
    for obj in objects.values():
        kubernetes_validate.validate(obj, "1.37", strict=True)


@pytest.mark.parametrize("env", sorted(ENABLED))
def test_the_plan_says_each_receivers_exposure(recordings, env):
    (note,) = [n for n in recordings[env].notes if n.startswith("fleetReceiver (")]
    assert note.startswith(f"fleetReceiver ({ENABLED[env][0]}) exposure public: a public Azure load balancer at "
                           f"https://{ENABLED[env][1]}.westeurope.cloudapp.azure.com:8443, open only to "
                           f"{', '.join(egress(env))} (")


def test_the_plan_says_an_internal_receiver_needs_a_vpn_or_expressroute(tmp_path):
    rec = plan.record_env(internal_stack(tmp_path, allowFrom=["192.0.2.0/28"]), root=tmp_path)
    (note,) = [n for n in rec.notes if n.startswith("fleetReceiver (")]
    assert note == ("fleetReceiver (production) exposure internal: an internal Azure load balancer at "
                    "https://10.40.15.250:8443, reachable only over a VPN or ExpressRoute into the VNET (this stack "
                    "provisions neither); the NetworkPolicy admits 192.0.2.0/28")


@pytest.mark.parametrize("env", sorted(ENABLED))
def test_only_the_sites_egress_addresses_reach_the_receiver_port(recordings, env):
    policy = receiver_objects(recordings[env])["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "fleet-receiver"}}
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"from": [{"ipBlock": {"cidr": ip}} for ip in egress(env)],
                                  "ports": [{"port": 8443, "protocol": "TCP"}]}]


@pytest.mark.parametrize("env", sorted(ENABLED))
def test_the_pod_is_one_locked_down_writer_running_fleet_receive_into_the_registry(recordings, env):
    fleet_env = ENABLED[env][0]
    objects = receiver_objects(recordings[env])
    deployment = objects["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    pod = deployment["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "fleet-receiver"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False and context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["readinessProbe"]["tcpSocket"] == container["livenessProbe"]["tcpSocket"] == {"port": "https"}
    assert container["ports"] == [{"containerPort": 8443, "name": "https", "protocol": "TCP"}]
    image, digest = container["image"].split("@")
    assert image.endswith(".azurecr.io/mlops-edge-kit/kit") and digest.startswith("sha256:")
    assert container["command"] == ["python", "-m", "common.cli", "fleet.receive", "--env", fleet_env, "--statuses",
                                    "registry", "--listen", "0.0.0.0:8443", "--cert",
                                    "/etc/fleet-receiver/tls/tls.crt", "--key", "/etc/fleet-receiver/tls/tls.key"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs == {name: {"name": "fleet-receiver-env", "key": name}
                    for name in ("FLEET_WEBHOOK_KEY", "FLEET_REGISTRY_USER", "FLEET_REGISTRY_PASSWORD")}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"]["readOnly"] is True and mounts["tls"]["mountPath"] == "/etc/fleet-receiver/tls"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "fleet-receiver-tls"
    assert objects["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("env", sorted(ENABLED))
def test_the_receiver_token_may_read_and_write_its_status_store_and_nothing_else(recordings, env):
    rec, fleet_env = recordings[env], ENABLED[env][0]
    repository = status_repository(fleet_env)  # where fleet.receive --statuses registry writes
    (scope,) = [s for s in rec.of_type("azure-native:containerregistry:ScopeMap")
                if s.inputs["scopeMapName"] == f"fleet-receiver-{fleet_env}"]
    assert sorted(scope.inputs["actions"]) == sorted(f"repositories/{repository}/{action}"
                                                     for action in ("content/read", "metadata/read", "content/write"))
    (token,) = [t for t in rec.of_type("azure-native:containerregistry:Token")
                if t.inputs["tokenName"] == f"fleet-receiver-{fleet_env}"]
    assert token.inputs["scopeMapId"].endswith(f"/scopeMaps/fleet-receiver-{fleet_env}")
    assert token.inputs["status"] == "enabled"
    password = next(r for r in rec.resources if r.name == "fleet-receiver-registry-password")
    assert token.urn in password.dependencies
    env_secret = next(r for r in rec.resources if r.name == "fleet-receiver-env")
    assert password.urn in env_secret.dependencies


def test_the_store_name_is_the_one_fleet_receive_writes():
    for env in ("qa", "production", "lab-1"):
        assert fleet_receiver.status_repository(env) == status_repository(env)


@pytest.mark.parametrize("env", sorted(ENABLED))
def test_the_tls_certificate_and_key_and_the_master_key_are_pulumi_secrets(recordings, env):
    secrets = {r.inputs["metadata"]["name"]: r.inputs for r in recordings[env].resources
               if r.type == "kubernetes:core/v1:Secret" and r.name.startswith("fleet-receiver-")}
    assert secrets["fleet-receiver-tls"]["type"] == "kubernetes.io/tls"
    assert secrets["fleet-receiver-tls"]["stringData"] == {"tls.crt": "[secret]", "tls.key": "[secret]"}
    assert secrets["fleet-receiver-env"]["stringData"] == dict.fromkeys(
        ["FLEET_WEBHOOK_KEY", "FLEET_REGISTRY_USER", "FLEET_REGISTRY_PASSWORD"], "[secret]")


def test_the_secret_values_never_appear_in_the_plan(tmp_path, monkeypatch):
    """With real values in secret config, neither the resources' inputs nor the outputs hold them."""
    document = yaml.safe_load((ROOT / "Pulumi.qa.yaml").read_text())
    values = {"fleetReceiverCert": CERT, "fleetReceiverKey": KEY, "fleetWebhookKey": MASTER}
    document["config"] |= {f"mlops-edge-kit:{key}": {"secure": "v1:encrypted"} for key in values}
    (tmp_path / "Pulumi.qa.yaml").write_text(yaml.safe_dump(document))
    record = plan.record

    def with_values(program, *, config, **kw):  # what the engine hands the program: the decrypted values
        return record(program, config={**config, **{f"mlops-edge-kit:{k}": v for k, v in values.items()}}, **kw)

    monkeypatch.setattr(plan, "record", with_values)
    rec = plan.record_env("qa", root=tmp_path)
    text = json.dumps([r.as_json() for r in rec.resources] + [rec.outputs])
    assert "fleet-receiver-tls" in text and "fleet-receiver-env" in text
    for secret in values.values():
        assert secret not in text


@pytest.mark.parametrize("version", ["1.30", "1.37"])
@pytest.mark.parametrize("env", sorted(ENABLED))
def test_the_receiver_objects_are_schema_valid_in_strict_mode(recordings, env, version):
    objects = [r.inputs for r in recordings[env].resources
               if r.type.startswith(K8S_TYPES) and r.name.startswith("fleet-receiver-")]
    assert len(objects) == 7  # both Secrets too
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def qa_settings(edit):
    """Pulumi.qa.yaml's settings, validated (SettingsError on a broken rule), after `edit` of its values."""
    from infra.stack.stack_config import load_stack, project_values, read_stack_file, stack_file
    values = project_values(read_stack_file(stack_file("qa")))
    edit(values)
    return load_stack(values, source="Pulumi.qa.yaml", env="qa", organization="organization").settings


def _receiver(config):
    qa = yaml.safe_load((ROOT / "Pulumi.qa.yaml").read_text())["config"]
    config["mlops-edge-kit:fleetReceiver"] = json.loads(json.dumps(qa["mlops-edge-kit:fleetReceiver"]))
    internal = {"exposure": "internal", "loadBalancerIp": "10.10.15.250"}  # inside dev's aksNodes
    config["mlops-edge-kit:fleetReceiver"] |= internal
    config["mlops-edge-kit:fleetReceiver"]["allowFrom"] = ["192.0.2.0/28"]  # dev lists no edge site
    return settings_of(config, "fleetReceiver")


@pytest.mark.parametrize("change, expected", [
    (lambda r: r.update(loadBalancerIp="10.99.0.7"),
     r"config\.mlops-edge-kit:fleetReceiver\.loadBalancerIp: 10\.99\.0\.7 is outside network\.subnets\.aksNodes"),
    (lambda r: r.update(loadBalancerIp="10.10.0.2"),
     r"fleetReceiver\.loadBalancerIp: 10\.10\.0\.2 is one of the addresses Azure reserves"),
    (lambda r: r.update(loadBalancerIp="10.10.300.1"), r"fleetReceiver\.loadBalancerIp: .*IPv4"),
    (lambda r: r["image"].update(digest="latest"), r"fleetReceiver\.image\.digest: String should match"),
    (lambda r: r.update(ca="not a certificate"), r"fleetReceiver\.ca: String should match"),
    (lambda r: r.update(allowFrom=["0.0.0.0/0"]), r"fleetReceiver\.allowFrom\[0\]: 0\.0\.0\.0/0 opens the receiver"),
    (lambda r: r.update(port=80), r"fleetReceiver\.port: Input should be greater than or equal to 1024"),
    (lambda r: r.update(enviroment="qa"), r"fleetReceiver\.enviroment: unknown key"),
    (lambda r: r.pop("environment"), r"fleetReceiver\.environment: Field required"),
    (lambda r: r.pop("loadBalancerIp"), r"fleetReceiver\.loadBalancerIp: exposure internal needs the fixed "
                                        r"private IP of its load balancer, a host of network\.subnets\.aksNodes "
                                        r"\(10\.10\.0\.0/20\)"),
    (lambda r: r.update(dnsLabel="mlk-receiver"),
     r"fleetReceiver\.dnsLabel: only for exposure: public \(an internal load balancer gets no Azure DNS name\)"),
    (lambda r: r.update(exposure="public"),
     r"fleetReceiver\.loadBalancerIp: exposure public takes no loadBalancerIp: Azure gives the public load balancer "
     r"its address and the sites use its DNS name; remove it"),
    (lambda r: r.update(exposure="public", loadBalancerIp=None, dnsLabel="Fleet_QA"),
     r"fleetReceiver\.dnsLabel: 'Fleet_QA' is not an Azure DNS label: 3-63 lowercase letters, digits and '-', "
     r"starting with a letter and ending with a letter or digit"),
    (lambda r: r.update(exposure="public", loadBalancerIp=None, dnsLabel="9fleet"), r"dnsLabel: '9fleet' is not"),
    (lambda r: r.update(exposure="public", loadBalancerIp=None, dnsLabel="fleet-"), r"dnsLabel: 'fleet-' is not"),
    (lambda r: r.update(exposure="public", loadBalancerIp=None, dnsLabel="fl"), r"dnsLabel: 'fl' is not"),
    (lambda r: r.update(exposure="public", loadBalancerIp=None, dnsLabel="f" * 64), r"dnsLabel: 'f{64}' is not"),
    (lambda r: r.update(exposure="vpn"), r"fleetReceiver\.exposure: Input should be 'internal' or 'public'"),
])
def test_bad_receiver_settings_name_the_key(stack_root, tmp_path, change, expected):
    problems = problems_for(stack_root, tmp_path, lambda config: change(_receiver(config)))
    expect_problems(problems, expected)


def test_a_derived_dns_label_longer_than_azure_allows_is_bad_settings(stack_root, tmp_path):
    def edit(config):
        config["mlops-edge-kit:namePrefix"] = "mlkfleet99"
        _receiver(config).update(exposure="public", loadBalancerIp=None, environment="e" * 52)
    expect_problems(problems_for(stack_root, tmp_path, edit),
                    r"fleetReceiver\.dnsLabel: 'mlkfleet99-fleet-e{52}' is not an Azure DNS label \(derived from "
                    r"namePrefix and environment: set one\)")


def test_the_longest_dns_label_azure_allows_is_taken():
    label = "f" + "-" * 61 + "1"
    def edit(values):
        values["fleetReceiver"]["dnsLabel"] = label
    receiver = qa_settings(edit).fleet_receiver
    assert receiver.address("westeurope", "mlk") == f"https://{label}.westeurope.cloudapp.azure.com:8443"


@pytest.mark.parametrize("exposure", [{}, {"exposure": "public", "loadBalancerIp": None}])
def test_a_receiver_no_site_could_reach_is_bad_settings(stack_root, tmp_path, exposure):
    """dev lists no edge site: without allowFrom, nobody would be admitted (public: the load balancer would have no
    source range, which is open to all)."""
    def edit(config):
        receiver = _receiver(config)
        receiver.pop("allowFrom")
        receiver.update(exposure)
    problems = problems_for(stack_root, tmp_path, edit)
    assert problems == ["Pulumi.dev.yaml: config.mlops-edge-kit:fleetReceiver.allowFrom: no site could report: give "
                        "the addresses the sites' reports come from (or list the sites with their egressIps in "
                        "registry.edgeSites)"]


def test_the_cli_exits_2_naming_every_bad_receiver_key_and_writes_nothing(tmp_path):
    document = yaml.safe_load((ROOT / "Pulumi.qa.yaml").read_text())
    document["config"]["mlops-edge-kit:fleetReceiver"] |= {"loadBalancerIp": "10.20.0.1", "dnsLabel": "QA_fleet",
                                                           "allowFrom": ["0.0.0.0/4"]}
    (tmp_path / "Pulumi.qa.yaml").write_text(yaml.safe_dump(document))
    out = tmp_path / "out"
    done = kit("plan", "--env", "qa", "-p", str(tmp_path), "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    where = "Pulumi.qa.yaml: config.mlops-edge-kit:fleetReceiver"
    assert (f"{where}.loadBalancerIp: exposure public takes no loadBalancerIp: Azure gives the public load balancer "
            "its address and the sites use its DNS name; remove it") in done.stderr
    assert f"{where}.dnsLabel: 'QA_fleet' is not an Azure DNS label: 3-63 lowercase letters" in done.stderr
    assert f"{where}.allowFrom[0]: 0.0.0.0/4 opens the receiver to far more than the sites" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_the_cli_exits_2_for_an_internal_receiver_at_a_reserved_address(tmp_path):
    document = yaml.safe_load((ROOT / "Pulumi.qa.yaml").read_text())
    document["config"]["mlops-edge-kit:fleetReceiver"] |= {"exposure": "internal", "loadBalancerIp": "10.20.0.1"}
    (tmp_path / "Pulumi.qa.yaml").write_text(yaml.safe_dump(document))
    done = kit("plan", "--env", "qa", "-p", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert ("Pulumi.qa.yaml: config.mlops-edge-kit:fleetReceiver.loadBalancerIp: 10.20.0.1 is one of the addresses "
            "Azure reserves in 10.20.0.0/20") in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_an_ephemeral_copy_of_a_stack_runs_no_second_receiver():
    """The base's receiver is the base's alone: its IP is in the base's address block, its store the base's."""
    from datetime import datetime, timezone

    from infra.lifecycle.ephemeral import derive_config
    base = yaml.safe_load((ROOT / "Pulumi.qa.yaml").read_text())["config"]
    config = derive_config(base, datetime(2030, 1, 2, tzinfo=timezone.utc))
    assert "mlops-edge-kit:fleetReceiver" in base and "mlops-edge-kit:fleetReceiver" not in config


def test_the_kit_image_runs_the_pods_command_as_the_pods_user(recordings):
    """fleet/image/Dockerfile: the pod's UID and working dir, `python` from the venv, every product package the
    kit's command line loads, the stack files and the seeds."""
    import ast
    text = (ROOT / "fleet" / "image" / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert f"USER {fleet_receiver.UID}:{fleet_receiver.UID}" in lines
    (container,) = receiver_objects(recordings["prod"])["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert f"WORKDIR {container['workingDir']}" in lines and container["command"][0] == "python"
    assert any(line.startswith("ENV PATH=/opt/kit/bin:") for line in lines)
    copied = {line.split()[1] for line in lines if line.startswith("COPY ") and line.endswith(f"/kit/{line.split()[1]}")}
    loaded = {alias.name.split(".")[0] for node in ast.walk(ast.parse((ROOT / "tasks.py").read_text()))
              if isinstance(node, (ast.Import, ast.ImportFrom))
              for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert {"common", "fleet"} | (loaded & {"infra", "agents", "edge_hosts", "lab", "fleet"}) <= copied
    assert "COPY tasks.py Pulumi.yaml Pulumi.*.yaml /kit/" in lines



@pytest.mark.parametrize("env", sorted(ENABLED))
def test_the_plan_says_when_the_image_digest_is_still_the_examples(recordings, env):
    assert any(n.startswith("fleetReceiver.image.digest is the example's zeros: build and push the kit's image")
               for n in recordings[env].notes)


def test_a_real_digest_gets_no_such_note():
    from infra.stack.settings_rules import warnings
    from infra.stack.stack_config import load_stack, project_values, read_stack_file, stack_file
    values = project_values(read_stack_file(stack_file("qa")))
    values["fleetReceiver"]["image"]["digest"] = "sha256:" + "ab" * 32
    settings = load_stack(values, source="Pulumi.qa.yaml", env="qa", organization="organization").settings
    assert not [n for n in warnings(settings) if n.startswith("fleetReceiver.image.digest")]

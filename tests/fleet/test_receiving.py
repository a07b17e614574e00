"""Each site reports with its own key (issue 18 item 5): the receiver takes the site from the URL path and the
key it verifies with, never from the body alone, refuses replays and forgeries, stamps its own receive time,
and serves HTTPS with a CA the sites' Provider trusts."""
import json
import ssl
import threading
import urllib.error
import urllib.request

import pytest

from fleet.receiver import InsecureListen, server, tls_context
from fleet.receiving.keys import MasterKeyError, signature, site_key
from fleet.status import StatusStore
from tests.fleet.test_status import event
from tests.fleet.tlsfiles import make_tls

MASTER = b"m" * 32
GENERATIONS = {"production": 3}
RECEIVED_AT = 1_900_000_000.0


def key(site, env="production", generation=3):
    return site_key(MASTER, generation, env, site)


def post(url, body, sig, context=None):
    request = urllib.request.Request(url, data=body, method="POST", headers={"X-Signature": sig})
    try:
        return urllib.request.urlopen(request, timeout=10, context=context).status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def receiver(tmp_path):
    store = StatusStore(tmp_path / "status")
    httpd = server(("127.0.0.1", 0), store, MASTER, GENERATIONS, clock=lambda: RECEIVED_AT)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield store, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_keys_differ_per_site_env_and_generation_and_need_a_long_master():
    assert len({key("a"), key("b"), key("a", env="qa"), key("a", generation=4)}) == 4
    assert key("a") == key("a") and len(key("a")) == 64
    with pytest.raises(MasterKeyError):
        site_key(b"short", 1, "production", "a")


def test_a_site_key_cannot_write_another_site_status(receiver):
    store, url = receiver
    mine = json.dumps(event("store-lyon")).encode()
    theirs = json.dumps(event("plant-berlin", "HealthCheckFailed", "error")).encode()
    # store-lyon's key on plant-berlin's path: the path selects plant-berlin's key, which does not verify
    assert post(f"{url}/sites/production/plant-berlin", theirs, signature(key("store-lyon"), theirs)) == 401
    # store-lyon's own path and key, but a body claiming to be plant-berlin
    assert post(f"{url}/sites/production/store-lyon", theirs, signature(key("store-lyon"), theirs)) == 403
    assert store.read("production") == {}
    assert post(f"{url}/sites/production/store-lyon", mine, signature(key("store-lyon"), mine)) == 202
    assert set(store.read("production")) == {"store-lyon"}


def test_forged_replayed_and_old_generation_bodies_are_refused(receiver):
    store, url = receiver
    body = json.dumps(event("plant-berlin")).encode()
    path = f"{url}/sites/production/plant-berlin"
    forged = body.replace(b"ReconciliationSucceeded", b"HealthCheckFailed")
    assert post(path, forged, signature(key("plant-berlin"), body)) == 401
    assert post(path, body, signature(key("plant-berlin", generation=2), body)) == 401  # rotated away
    assert post(path, body, signature(MASTER.decode(), body)) == 401  # the master key is no site's key
    assert post(path, body, signature(key("plant-berlin"), body)) == 202
    assert post(path, body, signature(key("plant-berlin"), body)) == 409  # the same body again: a replay
    assert post(f"{url}/sites/staging/plant-berlin", body, signature(key("plant-berlin", "staging"), body)) == 404
    assert post(f"{url}/", body, signature(key("plant-berlin"), body)) == 404
    assert store.read("production")["plant-berlin"].state == "healthy"


def test_the_receive_time_is_the_receivers_not_the_sites_clock(receiver):
    store, url = receiver
    no_rtc = dict(event("plant-berlin"), timestamp="1970-01-01T00:02:13Z")  # a Raspberry Pi before NTP
    body = json.dumps(no_rtc).encode()
    assert post(f"{url}/sites/production/plant-berlin", body, signature(key("plant-berlin"), body)) == 202
    assert store.read("production")["plant-berlin"].reported_at == RECEIVED_AT


def test_https_with_the_ca_and_plain_http_only_on_loopback(tmp_path):
    ca, cert, private = make_tls(tmp_path)
    store = StatusStore(tmp_path / "status")
    httpd = server(("127.0.0.1", 0), store, MASTER, GENERATIONS, tls_context(cert, private))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}/sites/production/plant-berlin"
    body = json.dumps(event("plant-berlin")).encode()
    try:
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            post(url, body, signature(key("plant-berlin"), body), ssl.create_default_context())
        assert store.read("production") == {}
        trusted = ssl.create_default_context(cafile=str(ca))
        assert post(url, body, signature(key("plant-berlin"), body), trusted) == 202
        assert store.read("production")["plant-berlin"].state == "healthy"
    finally:
        httpd.shutdown()
        httpd.server_close()
    with pytest.raises(InsecureListen):
        server(("0.0.0.0", 0), store, MASTER, GENERATIONS)


def test_the_rendered_provider_posts_to_the_sites_path_over_https_with_the_ca(seeds, tmp_path):
    import yaml
    from fleet.config import load_fleet
    from fleet.render import render_env
    from tests.fleet.crds import validate
    ca = make_tls(tmp_path)[0].read_text()
    fleet_yaml = seeds / "fleet.yaml"
    data = yaml.safe_load(fleet_yaml.read_text())
    data["environments"]["production"] |= {"notifyType": "generic-hmac", "receiver": {
        "address": "https://fleet-receiver.prod.internal:8443", "keyGeneration": 3, "ca": ca},
        "registry": "127.0.0.1:5000", "insecure": True}  # a receiver no stack deploys: named here
    data["environments"]["production"].pop("stack")
    fleet_yaml.write_text(yaml.safe_dump(data))
    fleet = load_fleet(seeds)
    rendered = render_env(fleet, "production", {"7": "sha256:" + "a" * 64, "6": "sha256:" + "b" * 64})
    for item in rendered:
        objects = {o["kind"]: o for o in item.flux_objects}
        provider = objects["Provider"]
        validate(provider)
        assert provider["spec"]["address"] == f"https://fleet-receiver.prod.internal:8443/sites/production/{item.site.name}"
        assert provider["spec"]["certSecretRef"] == {"name": "fleet-notify-ca"}
        assert provider["metadata"]["annotations"]["fleet.mlops-edge-kit/key-generation"] == "3"
        assert objects["Secret"]["stringData"] == {"ca.crt": ca}
    data["environments"]["production"].pop("receiver")
    fleet_yaml.write_text(yaml.safe_dump(data))
    with pytest.raises(Exception, match="receiver: give it exactly when notifyType is generic-hmac"):
        load_fleet(seeds)

"""The simulation's in-memory registry (simfleet.MemoryTags) answers the promotion's operations as the real one
(Debian's docker-registry with token auth, through fleet.promote.RegistryTags) does: tags and digests, a missing
tag or repository, a manifest whose blobs the repository lacks, a push through a pull-only credential. The same
operations run against both and every answer is compared, so the stand-in cannot drift."""
import secrets

from common.oci import RegistryError
from fleet import flux
from fleet.artifact import Pusher, site_artifact
from fleet.promote import RegistryTags
from tests.fleet.simfleet import MemoryTags


class Clock:
    def now(self) -> float:
        return 0.0


def answer(call):
    """What an operation answered: its value, or the refusal's kind and HTTP status."""
    try:
        return ("ok", call())
    except RegistryError as err:
        return ("refused", err.status)


def operations(tags, push, reader, env: str) -> list:
    """A promotion's registry traffic, with the cases it must survive."""
    site, other, state = (flux.repository_path(env, "site-a"), flux.repository_path(env, "site-b"),
                          f"fleet-state/{env}")
    r1 = site_artifact({"site.yaml": b"site-a r1\n"}, "https://example.test", "main@sha1:" + "1" * 40)
    r2 = site_artifact({"site.yaml": b"site-a r2\n"}, "https://example.test", "main@sha1:" + "2" * 40)
    foreign = site_artifact({"site.yaml": b"site-b only\n"}, "https://example.test", "main@sha1:" + "3" * 40)
    steps = [lambda: push(site, r1, ("r1",)), lambda: push(site, r2, ("r2",)), lambda: push(other, foreign, ("r1",)),
             lambda: tags.get(site, "r1"), lambda: tags.get(site, r2.digest), lambda: tags.get(site, "live"),
             lambda: tags.get(flux.repository_path(env, "no-such-site"), "r1"),
             lambda: tags.put(site, flux.LIVE_TAG, r1.manifest), lambda: tags.get(site, flux.LIVE_TAG),
             lambda: tags.put(site, "pre-r2", tags.get(site, flux.LIVE_TAG)[1]),
             lambda: tags.put(site, flux.LIVE_TAG, r2.manifest), lambda: tags.get(site, flux.LIVE_TAG),
             lambda: tags.get(site, "pre-r2"),
             lambda: tags.put(site, flux.LIVE_TAG, foreign.manifest),  # its blobs are in site-b only
             lambda: tags.get(site, flux.LIVE_TAG),
             lambda: tags.read_doc(state, "lock"),
             lambda: tags.write_doc(state, "lock", {"holder": "run-1", "release": "r2", "expires": 3600.0}),
             lambda: tags.read_doc(state, "lock"),
             lambda: tags.write_doc(state, "lock", {"holder": "", "release": "", "expires": 0}),
             lambda: tags.read_doc(state, "lock"),
             lambda: reader.get(site, flux.LIVE_TAG),
             lambda: reader.put(site, flux.LIVE_TAG, r1.manifest),  # refused: pull only
             lambda: reader.write_doc(state, "lock", {"holder": "run-2"}),
             lambda: tags.get(site, flux.LIVE_TAG), lambda: tags.read_doc(state, "lock")]
    return [answer(step) for step in steps]


def test_the_in_memory_registry_answers_the_promotions_operations_as_the_real_one(registry):
    env = f"parity{secrets.token_hex(3)}"
    writer = Pusher(registry.url, registry.user(f"release-{env}", [("*", ("pull", "push"))]))
    pull_only = Pusher(registry.url, registry.user(f"site-{env}", [(f"fleet/{env}/*", ("pull",)),
                                                                   (f"fleet-state/{env}", ("pull",))]))
    real = operations(RegistryTags(writer), writer.push, RegistryTags(pull_only), env)
    memory_tags = MemoryTags(Clock())
    memory = operations(memory_tags, memory_tags.push, memory_tags.reader(), env)
    assert memory == real
    kinds = [kind for kind, _ in real]
    assert kinds.count("refused") == 3  # the foreign manifest (400) and the pull-only writes (401)
    assert ("refused", 400) in real and real.count(("refused", 401)) == 2
    assert real[6] == ("ok", None) and real[5] == ("ok", None)  # a missing repository, a missing tag
    assert real[11][1][0] == real[1][1]  # live moved to r2's digest, as pushed

"""Mirrored (shadow) traffic rules and one-step rollback in the store, without processes."""

import asyncio

import pytest

from openscore.router.config import ConfigError, parse_service
from openscore.router.core import ServiceRuntime
from openscore.router.state import FileStateStore, NotFound


def endpoint(mirror=None, **versions):
    doc = {"computeType": "aksendpoint", "versions": versions}
    if mirror is not None:
        doc["mirrorTraffic"] = mirror
    return doc


BLUE = {"entryScript": "a.py", "trafficPercentile": 100}
GREEN = {"entryScript": "b.py"}


def err(doc):
    with pytest.raises(ConfigError) as e:
        parse_service("ep-a", doc, "/app")
    return e.value


def test_mirror_parsed_onto_a_version_without_live_traffic():
    s = parse_service("ep-a", endpoint({"green": 20}, blue=BLUE, green=GREEN), "/app")
    assert s.mirror == {"green": 20.0}
    assert s.traffic_shares() == {"blue": 100.0, "green": 0.0}  # mirroring takes nothing from live traffic


@pytest.mark.parametrize("doc,key,rule", [
    (endpoint({"green": 51}, blue=BLUE, green=GREEN), "services.ep-a.mirrorTraffic.green", "from 0 to 50"),
    (endpoint({"green": "10"}, blue=BLUE, green=GREEN), "services.ep-a.mirrorTraffic.green", "from 0 to 50"),
    (endpoint({"red": 10}, blue=BLUE, green=GREEN), "services.ep-a.mirrorTraffic.red", "names no version"),
    (endpoint({"blue": 10}, blue=BLUE, green=GREEN), "services.ep-a.mirrorTraffic.blue", "live traffic"),
    (endpoint({"green": 30, "red": 30}, blue=BLUE, green=GREEN, red=GREEN), "services.ep-a.mirrorTraffic",
     "adds up to 60"),
    (endpoint([1], blue=BLUE, green=GREEN), "services.ep-a.mirrorTraffic", "must be an object"),
])
def test_mirror_rules_name_the_key(doc, key, rule):
    e = err(doc)
    assert e.key == key and rule in e.rule


def test_mirror_needs_another_version():
    e = err({"computeType": "aks", "entryScript": "a.py", "mirrorTraffic": {"ep-a": 10}})
    assert e.key == "services.ep-a.mirrorTraffic" and "two versions" in e.rule


class _Pool:
    def __init__(self, ready):
        self.ready_count = ready


class _Version:
    def __init__(self, ready=1):
        self.pool = _Pool(ready)


def test_mirror_share_is_exact_and_skips_unready_versions():
    spec = parse_service("ep-a", endpoint({"green": 20, "red": 5}, blue=BLUE, green=GREEN, red=GREEN), "/app")
    versions = {"blue": _Version(), "green": _Version(), "red": _Version(ready=0)}
    rt = ServiceRuntime(spec, auth=None, versions=versions, shares=spec.traffic_shares())
    picks = [rt.choose_mirrors() for _ in range(1000)]
    assert sum(versions["green"] in p for p in picks) == 200  # exactly 20 %
    assert not any(versions["red"] in p for p in picks)      # no ready replica: no copy, no queueing
    assert not any(versions["blue"] in p for p in picks)


def test_rollback_is_one_step_and_redoable(tmp_path):
    async def main():
        store = FileStateStore(tmp_path)
        try:
            v1 = {"computeType": "aks", "entryScript": "/x/score.py", "numReplicas": 1}
            v2 = {**v1, "numReplicas": 2}
            await store.put_service("svc-a", v1)
            first = await store.get_keys("svc-a")
            with pytest.raises(LookupError, match="no previous configuration"):
                await store.rollback_service("svc-a")
            await store.put_service("svc-a", v2)
            await store.put_service("svc-a", v2)  # an identical re-apply is not a change: the previous stays v1
            back = await store.rollback_service("svc-a")
            assert back.config == v1 and (await store.get_service("svc-a")).spec.versions["svc-a"].num_replicas == 1
            assert (await store.get_keys("svc-a")).primary == first.primary  # keys are not rolled back
            again = await store.rollback_service("svc-a")  # rolling back a rollback redoes the change
            assert again.config == v2
            with pytest.raises(NotFound):
                await store.rollback_service("nope-svc")
        finally:
            await store.close()
    asyncio.run(main())

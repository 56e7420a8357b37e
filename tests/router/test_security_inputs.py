"""Bad inputs at the router's config and auth layer (issue 10, holes 8 and 10): each is refused naming the key."""

import pytest

from openscore.router.auth import AuthError, ServiceAuth, TokenAuthority, bearer
from openscore.router.config import MAX_REPLICAS, MAX_WORKERS, ConfigError, parse_service


def doc(**keys):
    return {"computeType": "aks", "entryScript": "/x/score.py", **keys}


@pytest.mark.parametrize(("keys", "named"), [
    ({"numReplicas": MAX_REPLICAS + 1}, "services.svc.numReplicas"),
    ({"autoScaler": {"autoscaleEnabled": True, "maxReplicas": 100000}}, "services.svc.autoScaler.maxReplicas"),
    ({"numReplicas": 1, "workers": MAX_WORKERS + 1}, "services.svc.workers"),
    ({"numReplicas": 1, "replicaArgs": ["--host", "0.0.0.0"]}, "services.svc.replicaArgs"),
    ({"numReplicas": 1, "keys": {"primaryKey": "abcdefgh\r\nX-Evil: 1"}}, "services.svc.keys.primaryKey"),
    ({"numReplicas": 1, "keys": {"secondaryKey": "abcdefgh\x00"}}, "services.svc.keys.secondaryKey"),
])
def test_bounds_and_key_characters_name_the_key(keys, named):
    with pytest.raises(ConfigError) as e:
        parse_service("svc", doc(**keys), "/")
    assert e.value.key == named


def test_the_bounds_themselves_are_accepted():
    parse_service("svc", doc(numReplicas=MAX_REPLICAS, workers=MAX_WORKERS), "/")


@pytest.mark.parametrize("header", ["Bearer \udcff\udcfe", "Bearer abc\x7fdef", "Bearer k\u00e9y"])
def test_non_ascii_credentials_are_a_401_not_a_crash(header):
    with pytest.raises(AuthError):
        bearer(header)
    for mode in ("key", "token"):
        with pytest.raises(AuthError):
            ServiceAuth(mode, ("k" * 16, "s" * 16)).check("svc", header, TokenAuthority())

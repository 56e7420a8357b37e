"""The auth matrix through a real router: keys, tokens, disabled auth, and the separately keyed admin API."""

import time

import jwt
import pytest
import requests
from routerkit import ADMIN_KEY, service


@pytest.fixture(scope="module")
def router(module_router):
    return module_router({
        "key-svc": service("echo.py", keys={"primaryKey": "primary-key-0001", "secondaryKey": "secondary-key-0001"}),
        "token-svc": service("echo.py", authEnabled=False, tokenAuthEnabled=True),
        "open-svc": service("echo.py", authEnabled=False),
    }, "--token-lifetime-s", "2")


def call(router, name, token=None, raw_auth=None):
    h = {"Content-Type": "application/json"}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if raw_auth is not None:
        h["Authorization"] = raw_auth
    return requests.post(f"{router.url}/api/v1/service/{name}/score", data=b"{}", headers=h, timeout=10)


def assert_401(r, text):
    assert r.status_code == 401, r.text
    assert text in r.json()["message"] and r.headers["WWW-Authenticate"].startswith("Bearer")


def admin(router, method, path, **kw):
    return router.admin.request(method, f"{router.url}/admin/v1/{path}", timeout=10, **kw)


def test_key_matrix(router):
    assert call(router, "key-svc", "primary-key-0001").status_code == 200
    assert call(router, "key-svc", "secondary-key-0001").status_code == 200
    assert_401(call(router, "key-svc"), "Authorization required")
    assert_401(call(router, "key-svc", raw_auth="Basic abc"), "Authorization required")
    assert_401(call(router, "key-svc", "primary-key-0002"), "not valid for service key-svc")
    # regenerate: the old value stops working at once, the other key is untouched
    r = admin(router, "POST", "services/key-svc/regenerateKeys", json={"keyType": "Primary"})
    new = r.json()["primaryKey"]
    assert r.status_code == 200 and len(new) >= 32
    assert_401(call(router, "key-svc", "primary-key-0001"), "not valid")
    assert call(router, "key-svc", new).status_code == 200
    assert call(router, "key-svc", "secondary-key-0001").status_code == 200
    # set explicitly (Azure's regen_key(set_key=...))
    r = admin(router, "POST", "services/key-svc/regenerateKeys",
              json={"keyType": "secondary", "keyValue": "chosen-secondary-01"})
    assert r.status_code == 200
    assert_401(call(router, "key-svc", "secondary-key-0001"), "not valid")
    assert call(router, "key-svc", "chosen-secondary-01").status_code == 200
    assert router.keys("key-svc") == {"primaryKey": new, "secondaryKey": "chosen-secondary-01"}
    assert admin(router, "POST", "services/key-svc/regenerateKeys", json={"keyType": "Tertiary"}).status_code == 400
    # a key does not open another service, and a token is not a key
    assert_401(call(router, "token-svc", new), "not a valid JWT")


def test_token_matrix(router):
    r = admin(router, "POST", "services/token-svc/token")
    assert r.status_code == 200
    t = r.json()
    assert set(t) == {"accessToken", "tokenType", "refreshAfter", "expiryOn"} and t["tokenType"] == "Bearer"
    assert t["refreshAfter"] < t["expiryOn"] <= time.time() + 3
    assert call(router, "token-svc", t["accessToken"]).status_code == 200
    assert_401(call(router, "token-svc"), "Authorization required")
    # forged: right claims, wrong secret; and a token for another service
    claims = jwt.decode(t["accessToken"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(t["accessToken"])["kid"]
    forged = jwt.encode(claims, b"not-the-secret-" * 3, algorithm="HS256", headers={"kid": kid})
    assert_401(call(router, "token-svc", forged), "invalid")
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    assert_401(call(router, "token-svc", unsigned), "invalid")
    other = jwt.encode({**claims, "aud": "key-svc"}, b"x" * 32, algorithm="HS256", headers={"kid": kid})
    assert call(router, "key-svc", other).status_code == 401
    assert admin(router, "POST", "services/key-svc/token").status_code == 400  # key-auth service: no tokens
    # expiry (lifetime 2 s, 1 s leeway)
    time.sleep(3.3)
    assert_401(call(router, "token-svc", t["accessToken"]), "expired")


def test_signing_key_rotation(router):
    old = admin(router, "POST", "services/token-svc/token").json()["accessToken"]
    r = admin(router, "POST", "signing-keys/rotate", json={})
    assert r.status_code == 200
    new = admin(router, "POST", "services/token-svc/token").json()["accessToken"]
    assert jwt.get_unverified_header(new)["kid"] == r.json()["kid"] != jwt.get_unverified_header(old)["kid"]
    assert call(router, "token-svc", old).status_code == 200  # old keys verify until their tokens expire
    assert call(router, "token-svc", new).status_code == 200
    assert admin(router, "POST", "signing-keys/rotate", json={"revoke": True}).status_code == 200
    assert_401(call(router, "token-svc", old), "unknown or revoked")
    assert_401(call(router, "token-svc", new), "unknown or revoked")


def test_disabled_auth(router):
    assert call(router, "open-svc").status_code == 200
    assert call(router, "open-svc", "anything").status_code == 200


def test_admin_api_is_keyed_separately(router):
    base = f"{router.url}/admin/v1/services"
    assert requests.get(base, timeout=5).status_code == 401
    assert requests.get(base, headers={"Authorization": "Bearer primary-key-0001"}, timeout=5).status_code == 401
    assert requests.get(base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5).status_code == 200
    # the admin key does not open scoring
    assert call(router, "key-svc", ADMIN_KEY).status_code == 401
    r = admin(router, "PUT", "services/bad-svc", json={"computeType": "aks", "entryScript": "x.py",
                                                       "numReplicas": 1, "scoringTimeoutMs": 400000})
    assert r.status_code == 400
    assert r.json()["key"] == "services.bad-svc.scoringTimeoutMs" and "300000" in r.json()["rule"]
    assert admin(router, "PUT", "services/Bad_Name", json={}).status_code == 400


def test_auth_failures_are_counted(router):
    call(router, "key-svc", "wrong-key-000001")
    text = requests.get(f"{router.url}/metrics", timeout=5).text
    assert 'openscore_router_auth_failures_total{reason="wrong_key",service="key-svc"}' in text
    assert 'openscore_router_auth_failures_total{reason="missing",service="token-svc"}' in text
    assert "openscore_router_admin_auth_failures_total" in text

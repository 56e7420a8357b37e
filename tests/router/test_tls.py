"""TLS termination at the router: HTTPS with a certificate and key, TLS 1.2 or later, clear start-up errors."""

import socket
import ssl
import subprocess
import sys

import pytest
import requests
from routerkit import ROOT, service


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "router.crt", d / "router.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return crt, key


def test_https_scoring_and_no_plain_http(start_router, cert, monkeypatch):
    crt, key = cert
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(crt))  # trust the self-signed certificate, nothing else
    r = start_router({"tls-svc": service("echo.py", authEnabled=False)}, "--tls-cert", str(crt), "--tls-key",
                     str(key), wait=False)
    r.url = r.url.replace("http://", "https://")
    r.wait_ready(None).wait_ready("tls-svc")
    resp = requests.post(r.url + "/api/v1/service/tls-svc/score", json={"a": 1})
    assert resp.status_code == 200 and resp.json()["len"] == 8 and resp.headers["x-openscore-version"] == "tls-svc"

    with socket.create_connection(("127.0.0.1", r.port)) as raw:
        ctx = ssl.create_default_context(cafile=str(crt))
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # plain HTTP on the TLS port is not served
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(r.url.replace("https://", "http://") + "/api/v1/service/tls-svc/score", json={}, timeout=5)
    # the router still answers TLS afterwards
    assert requests.get(r.url + "/healthz").status_code == 200


def test_tls_context_refuses_versions_below_1_2(cert):
    from openscore.router.cli import tls_context
    ctx = tls_context(str(cert[0]), str(cert[1]))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("flags,message", [
    (["--tls-cert", "CERT"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"], "No such file"),
])
def test_bad_tls_flags_are_a_config_error(tmp_path, cert, flags, message):
    flags = [str(cert[0]) if f == "CERT" else f for f in flags]
    p = subprocess.run([sys.executable, "-m", "openscore", "router", "--workspace", str(tmp_path / "ws"), "--port", "0",
                        "--admin-key", "test-admin-key-0123456789", *flags],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and message in p.stderr

"""The test cluster's certificates and keys, made with the `openssl` CLI (always on Debian; the `cryptography`
package is not a dependency of the project). One CA signs the API server's serving certificate (so in-cluster
clients, whose service-account token Secret carries this CA, verify TLS) and the API server's client certificate
for the kubelet."""

from __future__ import annotations

import subprocess
from pathlib import Path

API_SERVER_SANS = [
    "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local", "DNS:localhost",
    "IP:127.0.0.1", "IP:10.96.0.1", "IP:10.244.0.1",
]


def openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def signed(folder: Path, name: str, subject: str, extensions: str) -> None:
    """`name`.key and `name`.crt signed by ca.key."""
    ext = folder / f"{name}.ext"
    ext.write_text(extensions)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject, cwd=folder)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "3650", "-out", f"{name}.crt", "-extfile", ext.name, cwd=folder)


def ensure_pki(folder: Path) -> Path:
    """Create the cluster's keys under `folder` once; a restarted cluster keeps them (clients keep verifying)."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "done").exists():
        return folder
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "3650", "-subj", "/CN=openscore-test-ca", cwd=folder)
    signed(folder, "apiserver", "/CN=kube-apiserver",
           "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
           f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(API_SERVER_SANS)}\n")
    signed(folder, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client",
           "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n")
    openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)
    (folder / "done").write_text("")
    return folder

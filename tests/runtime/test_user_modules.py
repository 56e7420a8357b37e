"""A user's own modules named like openscore's components are what their score.py imports.

openscore installs only the `openscore` package, so `router.py`, `runtime.py` and `accelerators.py` beside
score.py (the app root is on sys.path, as in Azure) are the user's, not ours.
"""

from __future__ import annotations

import textwrap

import requests

USER_MODULES = ("router", "runtime", "accelerators")


def test_user_modules_beside_score_py_are_imported(serve, tmp_path):
    for name in USER_MODULES:
        (tmp_path / f"{name}.py").write_text(f"WHO = 'user {name}'\n")
    (tmp_path / "score.py").write_text(textwrap.dedent("""
        import accelerators
        import router
        import runtime

        def init():
            pass

        def run(data):
            return {m.__name__: [m.WHO, m.__file__] for m in (router, runtime, accelerators)}
    """))
    server = serve(tmp_path / "score.py", cwd=tmp_path)
    r = requests.post(server.url + "/score", data="{}", headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    got = r.json()
    for name in USER_MODULES:
        assert got[name] == [f"user {name}", str(tmp_path / f"{name}.py")]

"""The documentation stands on its own: its links resolve inside the repository, and THREAT_MODEL.md names
only tests that exist (a renamed test would otherwise leave a threat silently uncovered)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = sorted([ROOT / "README.md", ROOT / "THREAT_MODEL.md", *ROOT.glob("docs/*.md"),
               *ROOT.glob("entry_scripts/**/README.md")])
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(doc: Path):
    text = doc.read_text()
    assert "../shared" not in text and "/work/" not in text
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target):
            continue
        path = (doc.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
        assert path.exists(), f"{doc.name} links to a missing file: {target}"


def test_threat_model_names_only_tests_that_exist():
    text = (ROOT / "THREAT_MODEL.md").read_text()
    named, current = [], None
    for m in re.finditer(r"`([a-z_/]+\.py)::(test_\w+)`|`::(test_\w+)`", text):
        current = m.group(1) or current
        assert current, "a `::test` reference before any file name"
        named.append((current, m.group(2) or m.group(3)))
    assert len(named) > 30
    missing = [f"{f}::{t}" for f, t in named
               if not re.search(rf"^(?:async )?def {t}\(", (ROOT / "tests" / f).read_text(), re.M)]
    assert missing == []

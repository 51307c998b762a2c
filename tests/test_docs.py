"""The documents a user reads link to files that exist: a release run with a scratch --out or --images wrote a
model card whose pictures pointed at a folder outside the repository (session 16), and nothing noticed."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([ROOT / "README.md", ROOT / "sage_backend" / "checkpoints" / "MODEL_CARD.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def local_targets(document: Path) -> list[str]:
    """The link targets of a markdown file that name a file in the repository (no URL, no bare #anchor)."""
    targets = (match.group(1).split("#")[0] for match in LINK.finditer(document.read_text(encoding="utf-8")))
    return [t for t in targets if t and "://" not in t and not t.startswith("mailto:")]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_names_a_file_in_the_repository(document: Path) -> None:
    missing = [t for t in local_targets(document) if not (document.parent / t).resolve().exists()]
    outside = [t for t in local_targets(document) if ROOT not in (document.parent / t).resolve().parents]
    assert not missing and not outside, (missing, outside)

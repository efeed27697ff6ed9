"""The README points only inside the repository: every link is a file here or a heading of the
README itself, and nothing names a path above the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)|<(https?://[^>]+)>")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_readme_link_stays_in_the_repository() -> None:
    text = README.read_text(encoding="utf-8")
    anchors = {_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}
    links = [a or b for a, b in LINK.findall(text)]
    assert links, "no links found: the pattern is wrong"
    for link in links:
        assert "://" not in link and not link.startswith("mailto:"), f"external link {link}"
        target, _, fragment = link.partition("#")
        if not target:
            assert fragment in anchors, f"no heading for #{fragment}"
            continue
        resolved = (ROOT / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{link} points outside the repository"
        assert resolved.exists(), f"{link} does not exist"
    assert "../" not in text, "the README names a path outside the repository"

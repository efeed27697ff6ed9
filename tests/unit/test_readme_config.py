"""The configuration reference in the README is a valid settings file with the real defaults."""

from __future__ import annotations

import re
from pathlib import Path

from talkingface.config import Settings, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_settings_block_loads_and_matches_the_defaults(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block is not None
    config = tmp_path / "talkingface.toml"
    config.write_text(block.group(1), encoding="utf-8")

    documented = load_settings(config)
    defaults = Settings()

    for section in ("engines", "limits", "workers", "retry", "webhooks", "alerts", "evaluate"):
        assert getattr(documented, section) == getattr(defaults, section), section
    assert documented.api == defaults.api

"""HeyGem container paths: the image's settings accept face2face's /code/data layout, and
api.heygem_path_map maps it for a server installed outside that layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkingface.api.heygem_paths import heygem_settings, map_container_path, resolve_heygem_ref
from talkingface.config import Settings, load_settings
from talkingface.errors import ConfigError

IMAGE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "talkingface.toml"


def test_the_images_settings_are_face2faces_layout() -> None:
    settings = load_settings(IMAGE_CONFIG)

    assert settings.api.port == 8383
    assert settings.heygem_temp_dir == Path("/code/data/temp")
    assert settings.data_dir.is_relative_to("/code/data")
    assert settings.cache.dir.is_relative_to("/code/data")
    roots = heygem_settings(settings).api.input_roots
    for sent in ("/code/data/temp/x.wav", "x.wav", "/code/data/face2face/model.mp4"):
        resolved = Path(resolve_heygem_ref(sent, settings))
        assert any(resolved.is_relative_to(root) for root in roots), sent
    assert resolve_heygem_ref("x.wav", settings) == "/code/data/temp/x.wav"
    assert resolve_heygem_ref("https://h.example/a.wav", settings) == "https://h.example/a.wav"


def test_container_paths_map_on_whole_components_longest_prefix_first(tmp_path: Path) -> None:
    path_map = {"/code/data": tmp_path / "heygem", "/code/data/temp": tmp_path / "scratch"}

    assert map_container_path("/code/data/face2face/a.mp4", path_map) == str(
        tmp_path / "heygem" / "face2face" / "a.mp4"
    )
    assert map_container_path("/code/data/temp/x.wav", path_map) == str(tmp_path / "scratch/x.wav")
    assert map_container_path("/code/data", path_map) == str(tmp_path / "heygem")
    assert map_container_path("/code/database/x.wav", path_map) == "/code/database/x.wav"
    assert map_container_path("/srv/x.wav", path_map) == "/srv/x.wav"


def test_a_mapped_server_resolves_container_paths_under_its_targets(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        api={"heygem_path_map": {"/code/data/": str(tmp_path / "hg")}},
    )

    assert settings.api.heygem_path_map == {"/code/data": (tmp_path / "hg").resolve()}
    assert resolve_heygem_ref("/code/data/temp/x.wav", settings) == str(
        (tmp_path / "hg/temp/x.wav").resolve()
    )
    assert (tmp_path / "hg").resolve() in heygem_settings(settings).api.input_roots


@pytest.mark.parametrize("prefix", ["code/data", "/", "/code/../etc", ""])
def test_a_bad_path_map_prefix_is_refused_naming_the_setting(tmp_path: Path, prefix: str) -> None:
    config = tmp_path / "talkingface.toml"
    config.write_text(f'[api]\nheygem_path_map = {{ "{prefix}" = "/srv/heygem" }}\n')

    with pytest.raises(ConfigError) as raised:
        load_settings(config)

    assert "heygem_path_map" in raised.value.message
    assert "absolute container path" in raised.value.message

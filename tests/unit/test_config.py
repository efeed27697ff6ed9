"""Settings: laptop defaults, TOML file and TALKINGFACE_* env overrides, clear ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkingface.config import load_settings
from talkingface.errors import ConfigError, ErrorCode
from talkingface.vocabulary import FacePolicy, LoopMode


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TALKINGFACE_CONFIG", raising=False)
    monkeypatch.delenv("TALKINGFACE_LIMITS__QUEUE_FRAMES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "talkingface.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_run_on_a_laptop(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.engines.default == "classic"
    assert settings.engines.loop is LoopMode.PINGPONG
    assert settings.engines.face_policy is FacePolicy.LARGEST
    assert settings.limits.queue_frames == 4
    assert settings.limits.stage_timeout_s == 120.0
    assert settings.logging.level == "warning"
    assert settings.cache.dir == (tmp_path / "cache-home" / "talkingface").resolve()
    assert settings.cache.dir.is_absolute()


def test_toml_file_overrides_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[limits]\nqueue_frames = 9\nstage_timeout_s = 30.5\n\n[engines]\nloop = "restart"\n'
        '[logging]\nlevel = "DEBUG"\n',
    )
    settings = load_settings(path)
    assert settings.limits.queue_frames == 9
    assert settings.limits.stage_timeout_s == 30.5
    assert settings.limits.max_width_px == 4096  # untouched keys keep their defaults
    assert settings.engines.loop is LoopMode.RESTART
    assert settings.logging.level == "debug"


def test_config_file_named_by_env_var_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALKINGFACE_CONFIG", str(_write(tmp_path, "[limits]\nqueue_frames = 3\n")))
    assert load_settings().limits.queue_frames == 3


def test_env_var_overrides_a_nested_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKINGFACE_LIMITS__QUEUE_FRAMES", "32")
    settings = load_settings()
    assert settings.limits.queue_frames == 32
    assert settings.limits.stage_timeout_s == 120.0


def test_env_var_and_file_combine_on_different_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALKINGFACE_LIMITS__QUEUE_FRAMES", "32")
    settings = load_settings(_write(tmp_path, "[limits]\nstage_timeout_s = 9.0\n"))
    assert settings.limits.queue_frames == 32
    assert settings.limits.stage_timeout_s == 9.0


def test_unknown_key_in_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "[limits]\nqueue_frame = 4\n")
    with pytest.raises(ConfigError, match="queue_frame") as info:
        load_settings(path)
    assert info.value.code is ErrorCode.CONFIG_INVALID


def test_unknown_section_in_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="databse"):
        load_settings(_write(tmp_path, '[databse]\nurl = "x"\n'))


@pytest.mark.parametrize(
    ("toml", "setting"),
    [
        ("[limits]\nqueue_frames = 0\n", "limits.queue_frames"),
        ('[limits]\nstage_timeout_s = "soon"\n', "limits.stage_timeout_s"),
        ('[logging]\nlevel = "loud"\n', "logging.level"),
        ("[engines]\ncrf = 99\n", "engines.crf"),
    ],
)
def test_invalid_value_is_a_config_error_naming_the_setting(
    tmp_path: Path, toml: str, setting: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, toml))
    assert setting in info.value.message


def test_invalid_env_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKINGFACE_LIMITS__QUEUE_FRAMES", "many")
    with pytest.raises(ConfigError, match="queue_frames"):
        load_settings()


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml") as info:
        load_settings(missing)
    assert "not found" in info.value.message


def test_malformed_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[limits\nqueue_frames = 4\n"))


def test_env_var_beats_the_file_and_arguments_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "talkingface.toml"
    config.write_text("[limits]\nqueue_frames = 4\nstage_timeout_s = 9\n", encoding="utf-8")
    monkeypatch.setenv("TALKINGFACE_LIMITS__QUEUE_FRAMES", "32")
    settings = load_settings(config)
    assert settings.limits.queue_frames == 32
    assert settings.limits.stage_timeout_s == 9.0
    assert load_settings(config, limits={"queue_frames": 7}).limits.queue_frames == 7

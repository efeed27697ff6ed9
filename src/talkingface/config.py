"""Settings: defaults that run on a laptop, overridden by a TOML file and TALKINGFACE_* env vars."""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from talkingface.errors import ConfigError
from talkingface.pipeline.items import FacePolicy, LoopMode


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "talkingface"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineSettings(_Section):
    default: str = "classic"
    loop: LoopMode = LoopMode.PINGPONG
    face_policy: FacePolicy = FacePolicy.LARGEST
    crf: int = Field(18, ge=0, le=51)
    preset: str = "veryfast"


class LimitSettings(_Section):
    max_input_bytes: int = Field(2 * 2**30, gt=0)
    max_duration_s: float = Field(3600.0, gt=0)
    max_width_px: int = Field(4096, gt=0)
    max_height_px: int = Field(4096, gt=0)
    stage_timeout_s: float = Field(120.0, gt=0)
    queue_frames: int = Field(4, ge=1, le=1024)  # per stage queue; 1080p frames are 6 MB
    template_memory_mb: int = Field(512, ge=16)


class CacheSettings(_Section):
    dir: Path = Field(default_factory=default_cache_dir)
    enabled: bool = True

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class LoggingSettings(_Section):
    level: str = "warning"
    json_lines: bool | None = None  # None: JSON when stderr is not a terminal

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("level must be debug, info, warning or error")
        return value.lower()


class Settings(BaseSettings):
    """The one settings root; sections are plain models, unknown keys are errors."""

    model_config = SettingsConfigDict(
        env_prefix="TALKINGFACE_", env_nested_delimiter="__", extra="forbid"
    )

    engines: EngineSettings = Field(default_factory=lambda: EngineSettings())
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    cache: CacheSettings = Field(default_factory=lambda: CacheSettings())
    logging: LoggingSettings = Field(default_factory=lambda: LoggingSettings())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: explicit arguments, then TALKINGFACE_* env vars, then the TOML file."""
        return (init_settings, env_settings, _FileSource(settings_cls, _file_data.get()))


class _FileSource(PydanticBaseSettingsSource):
    """The parsed TOML file, as a settings source below the environment."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


_file_data: ContextVar[dict[str, Any]] = ContextVar("talkingface_config_file", default={})  # noqa: B039


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Defaults < TOML file < TALKINGFACE_* env < `overrides`; ConfigError names what is wrong."""
    data: dict[str, Any] = {}
    path = config_file or os.environ.get("TALKINGFACE_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"Config file not found: {path}.", cause=exc) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Config file {path} is not valid TOML: {exc}.", cause=exc) from exc
    token = _file_data.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"Invalid setting {where}: {first['msg']}.",
            details={"errors": [str(e["msg"]) for e in exc.errors()]},
            cause=exc,
        ) from exc
    finally:
        _file_data.reset(token)

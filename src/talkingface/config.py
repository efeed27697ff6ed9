"""Settings: defaults that run on a laptop, overridden by a TOML file and TALKINGFACE_* env vars."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from talkingface.errors import ConfigError
from talkingface.vocabulary import FacePolicy, LoopMode


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "talkingface"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Wav2LipMaskKind(StrEnum):
    """Which part of the Wav2Lip box the generated face replaces (docs/wav2lip.md)."""

    MOUTH = "mouth"  # lips, interior and jaw; the template's own skin elsewhere
    LOWER_FACE = "lower_face"  # the whole lower half of the box, feathered


class ResizeQuality(StrEnum):
    """Interpolation between the face box and the 96 px generator crop (docs/wav2lip.md)."""

    LINEAR = "linear"  # the reference's cv2.INTER_LINEAR both ways
    CUBIC = "cubic"  # area-averaged down, bicubic up
    LANCZOS = "lanczos"  # area-averaged down, Lanczos up (sharpest)


class Wav2LipSettings(_Section):
    """The wav2lip engine: a user-supplied checkpoint, where and how it runs, how it pastes."""

    checkpoint: Path | None = None  # wav2lip.pth / wav2lip_gan.pth / a TorchScript .pt
    trust_checkpoint: bool = False  # allow a pickle that needs arbitrary unpickling
    device: str = "cpu"  # cpu, cuda or cuda:N; never falls back silently
    batch_size: int | None = Field(None, ge=1, le=1024)  # None: 16 on CPU, 128 on CUDA
    # Autocast; auto: fp16 on CUDA, bf16 on a CPU with native bf16 (AMX / AVX-512 BF16)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    compile: bool = False  # torch.compile on CUDA (slow first job, ~2x the generator)
    threads: int | None = Field(None, ge=1, le=256)  # CPU torch threads; None: sized to cores
    pads_px: tuple[int, int, int, int] = (0, 10, 0, 0)  # face box top, bottom, left, right
    box_smoothing_frames: int = Field(5, ge=1, le=100)  # 1: no smoothing (--nosmooth)
    mask: Wav2LipMaskKind = Wav2LipMaskKind.MOUTH
    resize: ResizeQuality = ResizeQuality.LANCZOS

    @field_validator("checkpoint")
    @classmethod
    def _absolute_checkpoint(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
            raise ValueError(f"device {value!r} is not cpu, cuda or cuda:N")
        return value


class EngineSettings(_Section):
    default: str = "classic"
    loop: LoopMode = LoopMode.PINGPONG
    face_policy: FacePolicy = FacePolicy.LARGEST
    crf: int = Field(18, ge=0, le=51)
    preset: str = "veryfast"
    # A grainy template is encoded at a lower CRF (never below min_crf) so that its first second,
    # re-encoded, keeps this PSNR against itself; whole outputs measure about 0.5 dB less outside
    # the mouth. 0 always encodes at `crf` (media/encode_fidelity).
    min_psnr_db: float = Field(41.0, ge=0, le=60)
    min_crf: int = Field(10, ge=0, le=51)
    # Photo templates only: blinks and a slow drift of the whole picture (photo_life.py).
    photo_life: bool = False
    wav2lip: Wav2LipSettings = Field(default_factory=lambda: Wav2LipSettings())


class LimitSettings(_Section):
    max_input_bytes: int = Field(2 * 2**30, gt=0)
    max_duration_s: float = Field(3600.0, gt=0)
    max_width_px: int = Field(4096, gt=0)
    max_height_px: int = Field(4096, gt=0)
    stage_timeout_s: float = Field(120.0, gt=0)
    queue_frames: int = Field(4, ge=1, le=1024)  # per stage queue; 1080p frames are 6 MB
    template_memory_mb: int = Field(512, ge=16)
    probe_timeout_s: float = Field(30.0, gt=0)  # the API's probe of an input, in a child
    probe_memory_mb: int = Field(2048, ge=256)  # that child's data memory (RLIMIT_DATA)


class CacheSettings(_Section):
    dir: Path = Field(default_factory=default_cache_dir)
    enabled: bool = True
    max_bytes: int = Field(5 * 2**30, gt=0)  # the janitor evicts least recently used beyond

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class StorageSettings(_Section):
    """Where inputs and results live: the data directory (url None), or an S3-compatible
    bucket (`s3://bucket/prefix`) that workers on other nodes share (docs/cluster-storage.md).
    Credentials come from the standard AWS chain (env, ~/.aws, instance role), never here."""

    url: str | None = None
    endpoint_url: str | None = None  # MinIO, Ceph, moto…; None: AWS itself
    region: str | None = None
    multipart_threshold_bytes: int = Field(64 * 2**20, gt=0)  # larger uploads go in parts
    multipart_chunk_bytes: int = Field(16 * 2**20, gt=0)  # S3 raises parts under 5 MiB to 5 MiB
    retry_deadline_s: float = Field(60.0, gt=0)  # then STORAGE_UNAVAILABLE (retryable)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        """`s3://bucket` or `s3://bucket/prefix`, normalised without a trailing slash."""
        if value is None or not value.strip():
            return None
        value = value.strip()
        bucket = value.removeprefix("s3://").split("/", 1)[0]
        if not value.startswith("s3://") or not bucket:
            raise ValueError(
                f"storage.url {value!r} is not an S3 URL; write s3://bucket or "
                "s3://bucket/prefix, or leave it unset for the data directory"
            )
        return value.rstrip("/")


class LoggingSettings(_Section):
    level: str = "warning"
    json_lines: bool | None = None  # None: JSON when stderr is not a terminal

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("level must be debug, info, warning or error")
        return value.lower()


class DbSettings(_Section):
    url: str | None = None  # None: SQLite in WAL mode at <data_dir>/talkingface.db

    @field_validator("url")
    @classmethod
    def _driver(cls, value: str | None) -> str | None:
        """postgresql:// and postgres:// URLs use psycopg 3 (the driver we ship)."""
        if value is None:
            return None
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value


class WorkerSettings(_Section):
    executor: str = "local"  # local (spawned processes here) or ray (actors on a Ray cluster)
    count: int = Field(1, ge=1, le=64)
    heartbeat_s: float = Field(5.0, gt=0)
    lost_after_beats: int = Field(3, ge=1)  # missed heartbeats before an attempt is lost
    stall_s: float = Field(120.0, gt=0)  # no progress for this long: STALLED
    timeout_base_s: float = Field(300.0, gt=0)  # attempt limit = base + per_input_s × audio s
    timeout_per_input_s: float = Field(20.0, ge=0)
    ready_timeout_s: float = Field(180.0, gt=0)  # engine load deadline for a new worker
    recycle_after_jobs: int = Field(50, ge=1)
    kill_grace_s: float = Field(1.0, gt=0)  # SIGTERM → SIGKILL
    allow_faults: bool = False  # test-only fault injection through JobOptions.fault
    # executor = "ray" (docs/cluster-ray.md). With GPUs in the cluster: one actor per GPU;
    # without: `count` actors of ray_cpus_per_actor CPUs each.
    ray_address: str | None = None  # None: RAY_ADDRESS, else a private one-node Ray
    ray_cpus_per_actor: float = Field(1.0, gt=0)
    ray_actor_resources: dict[str, float] = Field(default_factory=dict)  # e.g. {talkingface=1}


class RetrySettings(_Section):
    max_retries: int = Field(3, ge=0, le=10)
    backoff_base_s: float = Field(2.0, ge=0)
    backoff_max_s: float = Field(120.0, ge=0)
    jitter: float = Field(0.5, ge=0, le=1)  # ± fraction of the delay


class WebhookSettings(_Section):
    secret: SecretStr | None = None  # HMAC-SHA256 key for X-Talkingface-Signature
    timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(6, ge=1, le=20)
    backoff_base_s: float = Field(1.0, ge=0)  # 1, 2, 4, 8… between attempts


class AlertSettings(_Section):
    interval_s: float = Field(30.0, gt=0)
    failure_window_s: float = Field(900.0, gt=0)
    failure_rate_max: float = Field(0.5, ge=0, le=1)
    failure_min_jobs: int = Field(5, ge=1)
    lost_window_s: float = Field(600.0, gt=0)
    lost_attempts_max: int = Field(3, ge=1)
    queue_wait_max_s: float = Field(1800.0, gt=0)
    webhook_urls: list[str] = Field(default_factory=list)


class ClusterSettings(_Section):
    """Several API processes on one PostgreSQL store: the scheduler leader's lease."""

    leader_lease_s: float = Field(10.0, ge=2.0)  # a dead leader is replaced within this
    election_interval_s: float = Field(1.0, gt=0)  # followers try, the leader confirms

    @model_validator(mode="after")
    def _interval_fits_lease(self) -> ClusterSettings:
        if self.election_interval_s > self.leader_lease_s / 4:
            raise ValueError(
                f"cluster.election_interval_s ({self.election_interval_s:g}) must be at most a "
                f"quarter of cluster.leader_lease_s ({self.leader_lease_s:g}): the leader "
                "confirms its lease several times before it runs out"
            )
        return self


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8383, ge=1, le=65535)
    input_roots: list[Path] = Field(default_factory=list)  # server paths jobs may reference
    max_upload_bytes: int = Field(2 * 2**30, gt=0)
    url_timeout_s: float = Field(120.0, gt=0)
    max_url_downloads: int = Field(16, ge=1, le=1000)  # submissions fetching URLs at once
    shutdown_timeout_s: int = Field(10, ge=1)  # a stop waits this long for open requests
    processes: int = Field(1, ge=1, le=64)  # API processes (serve --api-workers); >1: PostgreSQL
    reuse_port: bool = False  # separate servers share the port (SO_REUSEPORT); PostgreSQL only
    max_queued: int = Field(10_000, ge=1)
    retry_after_s: int = Field(30, ge=1)
    result_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    janitor_interval_s: float = Field(300.0, gt=0)
    min_free_disk_bytes: int = Field(2**30, ge=0)
    heygem_temp_dir: Path | None = None  # HeyGem clients' shared folder; None: <data_dir>/temp
    # HeyGem clients' container paths → this machine's, e.g. {"/code/data" = "/srv/heygem"};
    # the targets are input roots for /easy. Not needed in the image, where /code/data is real.
    heygem_path_map: dict[str, Path] = Field(default_factory=dict)
    keys: list[SecretStr] = Field(default_factory=list)  # API keys; empty: no auth (loopback)
    allow_unauthenticated: bool = False  # serve a non-loopback address without keys, on purpose
    trusted_hosts: list[str] = Field(default_factory=list)  # Host names a keyless server answers
    allow_private_url_hosts: bool = False  # trust every address (compatibility; prefer below)
    url_allowed_networks: list[str] = Field(default_factory=list)  # CIDRs URL hosts may be in

    @field_validator("input_roots")
    @classmethod
    def _absolute_roots(cls, value: list[Path]) -> list[Path]:
        return [root.expanduser().resolve() for root in value]

    @field_validator("heygem_path_map")
    @classmethod
    def _path_map(cls, value: dict[str, Path]) -> dict[str, Path]:
        """Prefixes absolute POSIX paths without '..', normalised; targets absolute."""
        mapped = {}
        for prefix, target in value.items():
            pure = PurePosixPath(prefix)
            if not pure.is_absolute() or ".." in pure.parts or str(pure) == "/":
                raise ValueError(
                    f"heygem_path_map key {prefix!r} must be an absolute container path "
                    "without '..' and not '/', such as /code/data"
                )
            mapped[str(pure)] = target.expanduser().resolve()
        return mapped

    @field_validator("url_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        """Each entry a CIDR (or a bare address, /32 or /128), normalised; host bits refused."""
        networks = []
        for entry in value:
            try:
                networks.append(str(ipaddress.ip_network(entry.strip(), strict=True)))
            except ValueError as exc:
                raise ValueError(
                    f"{entry!r} is not a network ({exc}); write a CIDR such as 10.20.0.0/16, "
                    "192.168.1.7/32 or fd00::/8"
                ) from exc
        return networks


class EvaluateSettings(_Section):
    """Quality receipts: the worker measures a render job's result after rendering it."""

    default: bool = False  # measure every render job; a job's own `evaluate` overrides
    syncnet_checkpoint: Path | None = None  # syncnet_v2.model: adds LSE-D / LSE-C / AV offset
    trust_checkpoint: bool = False  # allow a SyncNet file that needs arbitrary unpickling
    low_sync_floor: float | None = Field(None, ge=-1, le=1)  # sync correlation r below: low_sync
    low_lse_c_floor: float | None = Field(None, ge=0)  # SyncNet LSE-C below this: low_sync
    timeout_s: float = Field(300.0, gt=0)  # then the receipt says so; the job still succeeds

    @field_validator("syncnet_checkpoint")
    @classmethod
    def _absolute_checkpoint(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()


class Settings(BaseSettings):
    """The one settings root; sections are plain models, unknown keys are errors."""

    model_config = SettingsConfigDict(
        env_prefix="TALKINGFACE_", env_nested_delimiter="__", extra="forbid"
    )

    engines: EngineSettings = Field(default_factory=lambda: EngineSettings())
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    cache: CacheSettings = Field(default_factory=lambda: CacheSettings())
    logging: LoggingSettings = Field(default_factory=lambda: LoggingSettings())
    data_dir: Path = Path("talkingface-data")
    db: DbSettings = Field(default_factory=lambda: DbSettings())
    workers: WorkerSettings = Field(default_factory=lambda: WorkerSettings())
    retry: RetrySettings = Field(default_factory=lambda: RetrySettings())
    api: ApiSettings = Field(default_factory=lambda: ApiSettings())
    webhooks: WebhookSettings = Field(default_factory=lambda: WebhookSettings())
    alerts: AlertSettings = Field(default_factory=lambda: AlertSettings())
    cluster: ClusterSettings = Field(default_factory=lambda: ClusterSettings())
    storage: StorageSettings = Field(default_factory=lambda: StorageSettings())
    evaluate: EvaluateSettings = Field(default_factory=lambda: EvaluateSettings())

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def heygem_temp_dir(self) -> Path:
        """Where HeyGem clients put inputs (bare names) and read `/<code>-r.mp4` results."""
        configured = self.api.heygem_temp_dir
        return configured.expanduser().resolve() if configured else self.data_dir / "temp"

    @property
    def database_url(self) -> str:
        return self.db.url or f"sqlite:///{self.data_dir / 'talkingface.db'}"

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

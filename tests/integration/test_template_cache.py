"""The template cache: its key names the engine, and the janitor keeps it under its size bound
(least recently used first, never a template a queued or running job uses)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from talkingface.config import Settings
from talkingface.engines.base import EngineInfo
from talkingface.engines.classic import ClassicEngine
from talkingface.engines.prepared_template import PreparedTemplate
from talkingface.executors.local import LocalExecutor
from talkingface.jobs.records import JobInputs, JobOptions
from talkingface.jobs.store import JobStore
from talkingface.media.probe import choose_output_fps, probe
from talkingface.scheduler import Scheduler
from talkingface.templates import TemplateCache, prepare_template
from talkingface.vocabulary import FacePolicy
from tests.integration.template_fixtures import prepare_whole


class OtherEngine(ClassicEngine):
    """A second engine that happens to carry the classic engine's version number."""

    info = EngineInfo(
        name="other",
        version=ClassicEngine.info.version,
        needs_gpu=False,
        description="a test engine at the classic engine's version",
    )


def test_a_second_engine_at_the_same_version_never_reads_the_first_engines_data(
    tmp_path: Path, short_template_clip: Path
) -> None:
    classic = prepare_whole(short_template_clip, tmp_path, ClassicEngine())
    other = prepare_whole(short_template_clip, tmp_path, OtherEngine())
    classic_again = prepare_whole(short_template_clip, tmp_path, ClassicEngine())

    assert not classic.from_cache
    assert not other.from_cache, "the other engine was served the classic engine's entry"
    assert other.engine_name == "other" and other.key != classic.key
    assert classic_again.from_cache and classic_again.engine_name == "classic"
    for name, array in classic.engine_data.items():
        np.testing.assert_array_equal(classic_again.engine_data[name], array, err_msg=name)


def _entry_bytes(entry: Path) -> int:
    return sum(f.stat().st_size for f in entry.iterdir())


def _copy_entry(source: Path, key: str, content_sha256: str, age_s: float) -> Path:
    """Another complete entry (a template with other bytes), last used `age_s` ago."""
    target = source.parent / key
    shutil.copytree(source, target)
    meta_path = target / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.update(key=key, content_sha256=content_sha256)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    then = time.time() - age_s
    os.utime(target, (then, then))
    return target


def test_the_janitor_evicts_least_recently_used_templates_and_spares_one_in_use(
    tmp_path: Path, short_template_clip: Path, speech_wav: Path
) -> None:
    # Given four cached templates: the oldest is the template of a queued job, the second
    # oldest was just read by a job, two others were last used a while ago
    cache_dir = tmp_path / "cache"
    in_use = prepare_whole(short_template_clip, cache_dir, ClassicEngine())
    in_use_entry = cache_dir / in_use.key
    size = _entry_bytes(in_use_entry)
    old = time.time() - 1000
    os.utime(in_use_entry, (old, old))
    read_recently = _copy_entry(in_use_entry, "b" * 32, "b" * 64, age_s=900)
    idle = _copy_entry(in_use_entry, "c" * 32, "c" * 64, age_s=800)
    idle_newer = _copy_entry(in_use_entry, "d" * 32, "d" * 64, age_s=700)
    assert TemplateCache(cache_dir).load(read_recently.name) is not None  # a job reads it
    memo_bytes = sum(f.stat().st_size for f in (cache_dir / "hashes").iterdir())

    settings = Settings(
        data_dir=tmp_path / "data",
        cache={"dir": cache_dir, "max_bytes": 2 * size + memo_bytes + size // 2},
    )
    store = JobStore(settings.database_url)
    store.migrate()
    store.create(JobInputs(str(speech_wav), str(short_template_clip), 2.0), JobOptions())
    scheduler = Scheduler(settings, store, executor=LocalExecutor(settings))

    # When the janitor runs with four entries against room for two and a half
    scheduler.run_janitor()

    # Then the two least recently used idle entries are gone, the in-use one stays although
    # it is the oldest, and the one just read stays
    remaining = {p.name for p in cache_dir.iterdir() if p.name != "hashes"}
    assert remaining == {in_use_entry.name, read_recently.name}, remaining
    assert not idle.exists() and not idle_newer.exists()
    assert TemplateCache(cache_dir).load(in_use.key) is not None
    store.close()


def test_the_janitor_evicts_the_least_recently_used_first(
    tmp_path: Path, short_template_clip: Path
) -> None:
    cache_dir = tmp_path / "cache"
    first = prepare_whole(short_template_clip, cache_dir, ClassicEngine())
    entry = cache_dir / first.key
    size = _entry_bytes(entry)
    oldest = _copy_entry(entry, "e" * 32, "e" * 64, age_s=3000)
    middle = _copy_entry(entry, "f" * 32, "f" * 64, age_s=2000)
    memo_bytes = sum(f.stat().st_size for f in (cache_dir / "hashes").iterdir())
    settings = Settings(
        data_dir=tmp_path / "data",
        cache={"dir": cache_dir, "max_bytes": 2 * size + memo_bytes + size // 2},
    )
    store = JobStore(settings.database_url)
    store.migrate()

    Scheduler(settings, store, executor=LocalExecutor(settings)).run_janitor()

    # one entry over the bound: only the oldest goes
    assert not oldest.exists()
    assert middle.exists() and entry.exists()
    store.close()


def test_a_short_job_prepares_the_whole_template_so_its_video_does_not_depend_on_earlier_jobs(
    tmp_path: Path, template_clip: Path
) -> None:
    info = probe(template_clip)
    fps = choose_output_fps(info)

    def prepared(cache: str, frames_needed: int) -> PreparedTemplate:
        return prepare_template(
            template_clip,
            info,
            fps=fps,
            frames_needed=frames_needed,
            engine=ClassicEngine(),
            policy=FacePolicy.LARGEST,
            cache=TemplateCache(tmp_path / cache),
        )

    # a job needing 5 frames (0.2 s of speech) and one needing all of them, each on a cold cache
    short, full = prepared("short", 5), prepared("full", 10**6)
    assert short.frame_count == full.frame_count == round(info.duration_s * fps)
    assert short.complete and short.covers(10**6)  # a later, longer job reuses it as it is
    assert np.array_equal(short.track.landmarks_f32, full.track.landmarks_f32, equal_nan=True)
    assert short.engine_data.keys() == full.engine_data.keys()
    for name, values in full.engine_data.items():
        assert np.array_equal(short.engine_data[name], values), name

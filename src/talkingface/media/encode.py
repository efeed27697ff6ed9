"""Stage s6: encode rendered RGB frames to H.264 and mux the original speech as AAC into MP4.

Time-base and A/V-sync decisions (the one place they are written down):

* **Constant frame rate.** `fps` becomes an exact fraction, `Fraction(fps).limit_denominator(1001)`
  (29.97 -> 30000/1001). The video stream's time base is its inverse and frame k has pts k, so
  every frame sits exactly at k/fps; the MP4 muxer scales that into its own track timescale
  without rounding drift.
* **Audio time base** is 1/sample_rate; audio pts counts samples sent, starting at 0.
* **Time zero** is the first video frame and the first decoded sample of the audio source's first
  audio stream (its container start offset and the AAC priming it may carry are dropped by the
  decoder). media/audio.py analyses the same samples from the same origin, so the mouth motion
  computed per output frame lines up with what is heard.
* **Length.** The audio is trimmed or padded with silence to exactly round(frames * rate / fps)
  samples, i.e. the video's duration. The AAC encoder's own priming is written as an MP4 edit
  list by the muxer, so players start both tracks together.
* **Streaming.** After each video frame the audio is encoded up to that frame's end time in whole
  AAC frames (1024 samples), so memory stays bounded and the muxer interleaves packets.
* **Pixel shape.** An anamorphic template (sample aspect ratio 3:2, say) is rendered on its
  stored pixels and the output carries the same sample aspect ratio, so players show it at the
  template's display aspect.
* **Colour.** RGB is converted with the BT.709 matrix to limited-range yuv420p and the stream is
  tagged BT.709, which is what players assume for HD.
* **Publishing.** Output goes to `.NAME.partial-PID` beside the target (`movflags=+faststart`
  rewrites the file to put 'moov' first on close) and is renamed onto the target only after a
  clean close; on error the partial file is removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import av.container
import av.error
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from talkingface.errors import InvalidMediaError, Stage, UnexpectedError, translate_errors
from talkingface.media.probe import open_input, rate_fraction

logger = logging.getLogger(__name__)

AAC_SAMPLE_RATES_HZ = frozenset(
    {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}
)
AAC_FALLBACK_RATE_HZ = 48000
AAC_FRAME_SAMPLES = 1024
AVCOL_BT709 = 1  # AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic value
AVCOL_RANGE_MPEG = 1


class VideoWriter:
    """Write an MP4 (H.264 + the original audio as AAC) frame by frame; use it as a `with` block."""

    def __init__(
        self,
        path: str | Path,
        *,
        width: int,
        height: int,
        fps: float,
        audio_path: str | Path | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        threads: int = 0,
        sample_aspect_ratio: Fraction = Fraction(1),
    ) -> None:
        if width < 1 or height < 1 or fps <= 0:
            raise ValueError(f"bad output geometry {width}x{height} at {fps} fps")
        self._path = Path(path)
        self._temp_path = self._path.parent / f".{self._path.name}.partial-{os.getpid()}"
        self._width, self._height = width, height
        self._output_width, self._output_height = width + width % 2, height + height % 2
        self._rate = rate_fraction(fps)
        self._sample_aspect_ratio = sample_aspect_ratio
        self._frames_written = 0
        self._closed = False
        self._audio: _AudioTrack | None = None
        with translate_errors(Stage.ENCODE, context=f"creating {self._path.name}"):
            self._container = av.open(
                str(self._temp_path), mode="w", format="mp4", options={"movflags": "+faststart"}
            )
        try:
            self._video = self._add_video_stream(crf, preset, threads)
            if audio_path is not None:
                self._audio = _AudioTrack(Path(audio_path), self._container)
        except BaseException:
            self._discard()
            raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
        else:
            self.close()

    @property
    def frames_written(self) -> int:
        return self._frames_written

    @property
    def output_width(self) -> int:
        return self._output_width

    @property
    def output_height(self) -> int:
        return self._output_height

    def write(self, frame_rgb: np.ndarray) -> None:
        """Encode one (height, width, 3) uint8 RGB frame at time frames_written / fps."""
        self.write_converted(self.convert(frame_rgb))

    def convert(self, frame_rgb: np.ndarray) -> av.VideoFrame:
        """RGB → padded BT.709 yuv420p frame. Touches no encoder state, so a pipeline can run
        it on another thread than `write_converted` (the conversion costs as much as x264)."""
        if frame_rgb.shape != (self._height, self._width, 3) or frame_rgb.dtype != np.uint8:
            raise ValueError(
                f"frame must be ({self._height}, {self._width}, 3) uint8, "
                f"got {frame_rgb.shape} {frame_rgb.dtype}"
            )
        image = frame_rgb
        if (self._output_width, self._output_height) != (self._width, self._height):
            pad = ((0, self._output_height - self._height), (0, self._output_width - self._width))
            image = np.pad(frame_rgb, (*pad, (0, 0)), mode="edge")
        with translate_errors(Stage.ENCODE, context=f"converting a frame for {self._path.name}"):
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            return rgb.reformat(
                format="yuv420p",
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
            )

    def write_converted(self, frame_yuv: av.VideoFrame) -> None:
        """Encode a frame made by `convert`, at time frames_written / fps."""
        if self._closed:
            raise ValueError(f"{self._path.name}: write() after close()")
        with translate_errors(Stage.ENCODE, context=f"encoding {self._path.name}"):
            frame_yuv.pts = self._frames_written
            frame_yuv.time_base = 1 / self._rate
            self._container.mux(self._video.encode(frame_yuv))
            self._frames_written += 1
            if self._audio is not None:
                self._audio.encode_until(
                    self._audio_samples_for(self._frames_written, self._audio.sample_rate_hz)
                )

    def close(self) -> None:
        """Flush the encoders, finish the audio at the video's length, and publish the file."""
        if self._closed:
            return
        if self._frames_written == 0:
            self._discard()
            raise UnexpectedError(
                f"No frames were written to {self._path.name}; nothing to encode.",
                stage=Stage.ENCODE,
            )
        try:
            with translate_errors(Stage.ENCODE, context=f"finishing {self._path.name}"):
                self._container.mux(self._video.encode(None))
                if self._audio is not None:
                    self._audio.finish(
                        self._audio_samples_for(self._frames_written, self._audio.sample_rate_hz)
                    )
                self._container.close()
                os.replace(self._temp_path, self._path)
        except BaseException:
            self._discard()
            raise
        self._closed = True
        logger.debug(
            "wrote %s",
            self._path.name,
            extra={"event": "video_written", "frame_count": self._frames_written},
        )

    def _audio_samples_for(self, frame_count: int, sample_rate_hz: int) -> int:
        """Audio samples that span exactly `frame_count` video frames."""
        return round(Fraction(frame_count * sample_rate_hz) / self._rate)

    def _add_video_stream(self, crf: int, preset: str, threads: int) -> av.video.stream.VideoStream:
        with translate_errors(Stage.ENCODE, context="setting up the H.264 encoder"):
            stream = self._container.add_stream(
                "libx264", rate=self._rate, options={"crf": str(crf), "preset": preset}
            )
            stream.width, stream.height = self._output_width, self._output_height
            stream.pix_fmt = "yuv420p"
            stream.time_base = 1 / self._rate
            stream.codec_context.time_base = 1 / self._rate
            stream.codec_context.thread_count = threads
            stream.codec_context.colorspace = AVCOL_BT709
            stream.codec_context.color_primaries = AVCOL_BT709
            stream.codec_context.color_trc = AVCOL_BT709
            stream.codec_context.color_range = AVCOL_RANGE_MPEG
            if self._sample_aspect_ratio != 1:  # anamorphic template: same pixel shape out
                stream.codec_context.sample_aspect_ratio = self._sample_aspect_ratio
        return stream

    def _discard(self) -> None:
        """Close everything without publishing and remove the partial file."""
        self._closed = True
        if self._audio is not None:
            self._audio.close()
        try:
            self._container.close()
        except (av.error.FFmpegError, OSError) as exc:  # the partial file is deleted anyway
            logger.debug(
                "closing a discarded output failed: %s", exc, extra={"event": "discard_failed"}
            )
        try:
            self._temp_path.unlink(missing_ok=True)
        except OSError as exc:  # a read-only results dir: keep the error that brought us here
            logger.warning(
                "could not remove %s (%s); the janitor removes it later",
                self._temp_path,
                exc.strerror or exc,
                extra={"event": "file_not_removed", "path": str(self._temp_path)},
            )


class _AudioTrack:
    """The source's first audio stream, re-encoded to AAC in step with the video."""

    def __init__(self, source: Path, output: av.container.OutputContainer) -> None:
        self._source = source
        self._input = open_input(source, stage=Stage.ENCODE)
        try:
            if not self._input.streams.audio:
                raise InvalidMediaError(
                    f"{source.name} has no audio track; give a speech file or a video with sound.",
                    stage=Stage.ENCODE,
                    details={"path": str(source)},
                )
            in_codec = self._input.streams.audio[0].codec_context
            rate = in_codec.sample_rate
            self.sample_rate_hz = rate if rate in AAC_SAMPLE_RATES_HZ else AAC_FALLBACK_RATE_HZ
            self._layout = "mono" if in_codec.channels == 1 else "stereo"
            with translate_errors(Stage.ENCODE, context="setting up the AAC encoder"):
                self._stream = output.add_stream("aac", rate=self.sample_rate_hz)
                self._stream.layout = self._layout
                self._stream.time_base = Fraction(1, self.sample_rate_hz)
        except BaseException:
            self._input.close()
            raise
        self._channels = 1 if self._layout == "mono" else 2
        self._output = output
        self._chunks = self._iter_source()
        self._pending = np.zeros((self._channels, 0), dtype=np.float32)
        self._sent = 0

    def encode_until(self, sample_count: int) -> None:
        """Encode whole AAC frames while they end at or before `sample_count`."""
        while self._sent + AAC_FRAME_SAMPLES <= sample_count:
            self._encode(self._take(AAC_FRAME_SAMPLES))

    def finish(self, sample_count: int) -> None:
        """Encode exactly up to `sample_count` (trim or pad with silence) and flush."""
        self.encode_until(sample_count)
        if self._sent < sample_count:
            self._encode(self._take(sample_count - self._sent))
        self._output.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        self._input.close()

    def _encode(self, block: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=self._layout)
        frame.sample_rate = self.sample_rate_hz
        frame.pts = self._sent
        frame.time_base = Fraction(1, self.sample_rate_hz)
        self._output.mux(self._stream.encode(frame))
        self._sent += block.shape[1]

    def _take(self, count: int) -> np.ndarray:
        """(C, count) float32 from the source, padded with silence once the source ends."""
        while self._pending.shape[1] < count:
            chunk = next(self._chunks, None)
            if chunk is None:
                missing = count - self._pending.shape[1]
                silence = np.zeros((self._channels, missing), dtype=np.float32)
                self._pending = np.concatenate([self._pending, silence], axis=1)
                break
            self._pending = np.concatenate([self._pending, chunk], axis=1)
        block, self._pending = self._pending[:, :count], self._pending[:, count:]
        return np.ascontiguousarray(block)

    def _iter_source(self) -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self.sample_rate_hz)
        decoded_count = 0
        try:
            for frame in self._input.decode(audio=0):
                decoded_count += 1
                for out in resampler.resample(frame):
                    yield out.to_ndarray().astype(np.float32, copy=False)
            for out in resampler.resample(None):
                yield out.to_ndarray().astype(np.float32, copy=False)
        except av.error.FFmpegError as exc:
            raise InvalidMediaError(
                f"The audio of {self._source.name} cannot be decoded after frame "
                f"{decoded_count}; re-export it as WAV or M4A (AAC).",
                stage=Stage.ENCODE,
                details={"path": str(self._source), "frame": decoded_count, "ffmpeg": str(exc)},
            ) from exc

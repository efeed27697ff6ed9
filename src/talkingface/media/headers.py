"""Input checks FFmpeg cannot make for us: a photo's declared size, a WAV's declared length.

FFmpeg learns a PNG's or JPEG's size only by decoding it, and silently shortens a WAV whose
header promises more sound than the file holds. Both facts sit in the first bytes of the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HEAD_BYTES = 256 * 1024  # EXIF and ICC segments may precede a JPEG's frame header
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_UNSIZED_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
WAV_UNKNOWN_SIZE = 0x7FFFF000  # streaming writers put 0 or a huge placeholder in the header


@dataclass(frozen=True, slots=True)
class WavLayout:
    """Where a RIFF/WAVE file's samples are, by its header and by the file's real size."""

    declared_bytes: int  # the data chunk's size field
    present_bytes: int  # bytes after the data chunk's header
    byte_rate: int  # bytes per second (fmt chunk)


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(HEAD_BYTES)


def declared_image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) a PNG or JPEG header declares, read without decoding; else None."""
    head = _head(path)
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(b"\xff\xd8"):
        return _jpeg_frame_size(head)
    return None


def _jpeg_frame_size(head: bytes) -> tuple[int, int] | None:
    """Walk the JPEG marker segments up to the first frame header (SOFn)."""
    position = 2
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in JPEG_UNSIZED_MARKERS:
            position += 2
            continue
        length = int.from_bytes(head[position + 2 : position + 4], "big")
        if marker in JPEG_FRAME_MARKERS and position + 9 <= len(head):
            height = int.from_bytes(head[position + 5 : position + 7], "big")
            width = int.from_bytes(head[position + 7 : position + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header: not ours to judge
            return None
        position += 2 + length
    return None


def wav_layout(path: Path) -> WavLayout | None:
    """The data chunk of a RIFF/WAVE file, or None when the file is not one or the header
    leaves the size open (0 or a streaming placeholder)."""
    head = _head(path)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    byte_rate = 0
    position = 12
    while position + 8 <= len(head):
        kind = head[position : position + 4]
        size = int.from_bytes(head[position + 4 : position + 8], "little")
        if kind == b"fmt " and position + 16 <= len(head):
            byte_rate = int.from_bytes(head[position + 16 : position + 20], "little")
        if kind == b"data":
            if size == 0 or size >= WAV_UNKNOWN_SIZE or byte_rate <= 0:
                return None
            present = path.stat().st_size - (position + 8)
            return WavLayout(declared_bytes=size, present_bytes=present, byte_rate=byte_rate)
        position += 8 + size + (size & 1)  # chunks are padded to an even length
    return None

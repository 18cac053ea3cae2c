"""Choosing the magic-bytes library for uploads (plugins/validate/sniff.py): ``filetype``
against ``puremagic``, on the first bytes of the files an upload route sees.

Both name WAV, MP3 and FLAC correctly; the figures decide (docs/performance.md,
bench/results/). ``test_sniffers_on_an_executable`` records the other difference: filetype
names a Windows executable, puremagic answers with unrelated guesses.
"""

from __future__ import annotations

import io
import wave

import filetype
import puremagic
import pytest

from bench.support.fixture_types import Benchmark
from plugins.validate.sniff import SNIFF_BYTES, sniff


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(bytes(range(256)) * 64)
    return buf.getvalue()[:SNIFF_BYTES]


SAMPLES = {
    "wav": (_wav(), "audio/wav"),
    "mp3": ((b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(SNIFF_BYTES))[:SNIFF_BYTES],
            "audio/mpeg"),
    "flac": ((b"fLaC\x00\x00\x00\x22" + b"\x10\x00" * 17 + bytes(SNIFF_BYTES))[:SNIFF_BYTES], "audio/flac"),
}
EXE = (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(SNIFF_BYTES))[:SNIFF_BYTES]


@pytest.mark.benchmark(group="sniff")
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def bench_filetype(benchmark: Benchmark, kind: str) -> None:
    head, expected = SAMPLES[kind]
    assert benchmark(sniff, head) == expected


@pytest.mark.benchmark(group="sniff")
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def bench_puremagic(benchmark: Benchmark, kind: str) -> None:
    head, expected = SAMPLES[kind]

    def guess() -> str:
        return str(puremagic.magic_string(head)[0].mime_type)

    found = benchmark(guess)
    assert found.split("/")[0] == expected.split("/")[0]


def test_sniffers_on_an_executable() -> None:
    assert filetype.guess_mime(EXE) == "application/x-msdownload"
    assert sniff(EXE) == "application/x-msdownload"
    assert not any(m.mime_type == "application/x-msdownload" for m in puremagic.magic_string(EXE))

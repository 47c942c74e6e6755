"""Gzip uploads over HTTP: decompressed while streaming, bombs refused with nothing stored."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import LiveApi
from tunebridge.settings import Settings


def _nothing_stored(live: LiveApi) -> None:
    root = live.runtime.blobs.root
    assert list(root.rglob("*.jsonl")) == []
    assert list((root / ".staging").iterdir()) == []


def gzip_bomb(gibibytes: int = 1) -> bytes:
    """A valid gzip file of `gibibytes` GiB of zeros in about 1 MB, built in about a second:
    after a full flush deflate restarts, so every 1 MiB of zeros compresses to the same bytes,
    and one compressed piece is repeated instead of compressing a gigabyte."""
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflate.compress(zeros)
    deflate.flush(zlib.Z_FULL_FLUSH)
    piece = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(1024 * gibibytes):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    size = (1024 * gibibytes << 20) & 0xFFFFFFFF
    return (header + piece * (1024 * gibibytes) + deflate.flush()
            + struct.pack("<II", crc, size))


def test_the_bomb_is_real() -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 1_100_000
    inflater = zlib.decompressobj(31)
    head = inflater.decompress(bomb[:8192], 1 << 22)
    assert head == bytes(1 << 22)  # 8 KB already inflate to (at least) 4 MiB of zeros
    assert struct.unpack("<I", bomb[-4:])[0] == (1 << 30) & 0xFFFFFFFF


def test_gzip_body_multipart_and_magic_bytes_store_the_plain_dataset(
        live: LiveApi, chat_jsonl: bytes) -> None:
    packed = gzip.compress(chat_jsonl)
    with live.client() as http:
        plain = http.post("/api/datasets", content=chat_jsonl).json()
        encoded = http.post("/api/datasets", content=packed,
                            headers={"Content-Encoding": "gzip"})
        multipart = http.post("/api/datasets", files={
            "file": ("train.jsonl.gz", packed, "application/gzip")})
        sniffed = http.post("/api/datasets", content=packed)
        members = http.post("/api/datasets", content=gzip.compress(chat_jsonl[:100])
                            + gzip.compress(chat_jsonl[100:]), params={"filename": "x.jsonl.gz"})
    for response in (encoded, multipart, sniffed, members):
        assert response.status_code == 200, response.text  # the same bytes as `plain`
        assert response.json()["id"] == plain["id"]
    assert plain["size_bytes"] == len(chat_jsonl) and plain["num_examples"] == 12
    stored = Path(live.runtime.blobs.path_for(plain["sha256"]))
    assert stored.read_bytes() == chat_jsonl


def test_new_gzip_upload_is_named_without_gz(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        response = http.post("/api/datasets", files={
            "file": ("train.jsonl.gz", gzip.compress(chat_jsonl), "application/gzip")})
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "train.jsonl"


def test_gzip_bomb_is_413_and_nothing_is_stored(live: LiveApi) -> None:
    bomb = gzip_bomb()
    with live.client() as http:
        raw = http.post("/api/datasets", content=bomb, headers={"Content-Encoding": "gzip"})
        multipart = http.post("/api/datasets", files={
            "file": ("big.jsonl.gz", bomb, "application/gzip")})
    for response in (raw, multipart):
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "decompression_bomb"
        assert "200x" in error["message"] and "nothing was stored" in error["message"]
        assert error["details"]["decompressed_bytes"] < 64 << 20  # stopped early
    _nothing_stored(live)


def test_decompressed_size_counts_against_the_upload_cap(live: LiveApi) -> None:
    live.runtime.settings.max_upload_bytes = 200_000
    text = b"".join(json.dumps({"text": f"line {n} " + "word " * (n % 37)}).encode() + b"\n"
                    for n in range(5000))
    packed = gzip.compress(text)
    assert len(packed) < 200_000 < len(text) and len(text) < 200 * len(packed)
    with live.client() as http:
        response = http.post("/api/datasets", content=packed,
                             headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    _nothing_stored(live)


@pytest.mark.parametrize("body", [b"\x1f\x8bnot really gzip",
                                  gzip.compress(b'{"text": "a"}\n')[:-6]])
def test_corrupt_or_truncated_gzip_is_422(live: LiveApi, body: bytes) -> None:
    with live.client() as http:
        response = http.post("/api/datasets", content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_gzip"
    _nothing_stored(live)


def test_upload_cap_defaults_to_8_gb() -> None:
    assert Settings().max_upload_bytes == 8 * 1024**3
    assert Settings().max_gzip_ratio == 200


def test_validate_command_reads_gzip(tmp_path: Path, chat_jsonl: bytes) -> None:
    from tunebridge.cli import app

    good = tmp_path / "train.jsonl.gz"
    good.write_bytes(gzip.compress(chat_jsonl))
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(chat_jsonl + b'{"messages": [}\n'))
    ok = CliRunner().invoke(app, ["validate", str(good), "--json"])
    broken = CliRunner().invoke(app, ["validate", str(bad), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["num_examples"] == 12
    assert json.loads(ok.stdout)["num_bytes"] == len(chat_jsonl)
    assert broken.exit_code == 1
    problems = json.loads(broken.stdout)["problems"]
    assert [(p["code"], p["line"], p["column"]) for p in problems] == [("invalid_json", 13, 15)]

"""The one checksum check (zoo.manifest.verify_file / file_matches) and its shortcuts."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from zoo import manifest
from zoo.errors import ChecksumMismatchError
from zoo.manifest import VerifiedStamps, file_matches, verify_file

ZOO = Path(__file__).resolve().parents[1] / "zoo"


def _file(tmp_path: Path, data: bytes = b"weights") -> tuple[Path, str]:
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    return p, hashlib.sha256(data).hexdigest()


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = manifest.sha256_file

    def counting(path):
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(manifest, "sha256_file", counting)
    return calls


def test_verify_file_names_the_file_both_digests_and_the_next_step(tmp_path):
    p, good = _file(tmp_path)
    verify_file(p, good)
    assert file_matches(p, good)
    bad = "0" * 64
    assert not file_matches(p, bad)
    with pytest.raises(ChecksumMismatchError) as e:
        verify_file(p, bad)
    msg = str(e.value)
    assert str(p) in msg and bad in msg and good in msg and "re-download or rebuild" in msg
    assert (e.value.path, e.value.expected, e.value.actual) == (str(p), bad, good)
    assert isinstance(e.value, OSError)
    with pytest.raises(ChecksumMismatchError, match="weights/a.safetensors.*ask the maintainers") as e:
        verify_file(p, bad, "ask the maintainers", what="weights/a.safetensors")
    assert e.value.path == "weights/a.safetensors"
    with pytest.raises(FileNotFoundError):
        verify_file(tmp_path / "missing", good)


def test_stamps_skip_an_unchanged_file_only_when_asked(tmp_path, hashed):
    p, good = _file(tmp_path)
    stamps = VerifiedStamps(tmp_path)
    verify_file(p, good, stamps=stamps, rel="f.bin", reuse_stamp=True)  # first time: hashed, remembered
    verify_file(p, good, stamps=stamps, rel="f.bin", reuse_stamp=True)  # unchanged: not hashed again
    assert hashed == ["f.bin"]
    verify_file(p, good, stamps=stamps, rel="f.bin")  # without reuse_stamp ("full"): hashed
    assert hashed == ["f.bin"] * 2
    assert not file_matches(p, "1" * 64, stamps=stamps, rel="f.bin", reuse_stamp=True)  # a stamp of another digest
    p.write_bytes(b"changed")  # a new mtime/size: hashed, and refused
    with pytest.raises(ChecksumMismatchError):
        verify_file(p, good, stamps=stamps, rel="f.bin", reuse_stamp=True)


def test_a_hub_blob_named_by_its_digest_is_not_hashed_again(tmp_path, hashed):
    blob, digest = _file(tmp_path)
    named = tmp_path / digest
    blob.rename(named)
    link = tmp_path / "entry"
    link.symlink_to(named)
    verify_file(link, digest, trust_blob_name=True)
    assert hashed == []
    verify_file(link, digest)  # not asked to trust the name: hashed
    assert hashed == ["entry"]
    named.write_bytes(b"bit rot")  # the name is trusted as huggingface_hub checked it on download ...
    assert file_matches(link, digest, trust_blob_name=True)
    assert not file_matches(link, digest)  # ... a plain check still hashes
    assert not file_matches(link, "2" * 64, trust_blob_name=True)  # another digest: hashed, refused


def test_verify_folder_uses_the_same_check(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"a")
    manifest.write_manifest(tmp_path)
    assert manifest.verify_folder(tmp_path) == ["a.bin"]
    (tmp_path / "a.bin").write_bytes(b"b")
    with pytest.raises(ChecksumMismatchError, match="a.bin.*re-download or rebuild"):
        manifest.verify_folder(tmp_path)


def test_no_module_compares_hashes_itself():
    """A sha256 is compared in zoo.manifest only: elsewhere ``sha256_file`` only computes one (for a manifest
    or a marker) and checks go through verify_file / file_matches."""
    offenders = []
    for path in sorted(ZOO.rglob("*.py")):
        if path.name == "manifest.py" or "sample_zoo" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                calls = [n for part in (node.left, *node.comparators) for n in ast.walk(part)
                         if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) in
                         ("sha256_file", "hexdigest")]
                if calls:
                    offenders.append(f"{path.relative_to(ZOO.parent)}:{node.lineno}")
    assert offenders == []

"""zoo.hub against a real Hub-compatible server (olah, see tests/hub_server.py): push, HubSource, pull."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import save_file

from zoo import hub, hub_env, hub_source
from zoo.errors import (
    ChecksumMismatchError,
    InvalidChoiceError,
    NotCachedError,
    SourceNotFoundError,
    TokenMissingError,
)
from zoo.manifest import MANIFEST_PATH, read_manifest, verify_folder, write_manifest

pytestmark = pytest.mark.hub

N_PER_SHARD = 4
DELAYS = (100, 200, 300)
CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: metadata/networks.parquet
---
# Test zoo
A tiny fake release for the Hub tests.
"""


def _write_release(folder: Path) -> list[str]:
    """A tiny release in the format of docs/format.md: 3 shards of 4 networks; returns its release files."""
    rng = np.random.default_rng(0)
    rows = []
    for s, delay in enumerate(DELAYS):
        ids = [f"nopost-d{delay}-{i}" for i in range(N_PER_SHARD)]
        wfile = f"weights/nopost/delay{delay:04d}-000.safetensors"
        cfile = f"curves/nopost/delay{delay:04d}-000.parquet"
        k = N_PER_SHARD
        shapes = {"W_in.weight": (k, 100, 2), "W_in.bias": (k, 100), "W_rec.weight": (k, 100, 100),
                  "W_rec.bias": (k, 100), "W_out.weight": (k, 2, 100), "W_out.bias": (k, 2)}
        tensors = {n: rng.standard_normal(sh).astype(np.float32) for n, sh in shapes.items()}
        (folder / wfile).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folder / wfile), metadata={"format": "rnn-stm-zoo/1", "net_ids": json.dumps(ids)})
        epochs = [5, 5, 3, 5]
        curves = pa.table({
            "net_id": pa.array(ids, pa.string()),
            **{c: pa.array([rng.random(e).astype(np.float32).tolist() for e in epochs], pa.list_(pa.float32()))
               for c in ("loss", "accuracy", "reliability", "grad_norm")}})
        (folder / cfile).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(curves, folder / cfile)
        for i, nid in enumerate(ids):
            learned = i % 2 == 0
            rows.append(dict(
                net_id=nid, family="nopost", seed=s * 100 + i, lr=1e-3, delay_ms=delay, post_ms=0, response_ms=200,
                tau_ms=100.0, nomemory=False, epochs=5, epochs_run=epochs[i], diverged=epochs[i] < 5,
                final_loss=0.1, final_accuracy=0.9, final_reliability=0.9, first_learned_epoch=3 if learned else -1,
                stable=True, learned=learned, outcome="slow_point" if learned else "no_learning",
                mechanism="slow_point" if learned else None, psd_ratio=0.5 if learned else float("nan"),
                label_version="v1", config=json.dumps({"seed": s * 100 + i}), weights_file=wfile,
                weights_index=i, curves_file=cfile, reference_outcome=None))
    meta = pd.DataFrame(rows)
    (folder / "metadata").mkdir(parents=True, exist_ok=True)
    meta.to_parquet(folder / "metadata" / "networks.parquet", index=False)
    (folder / "zoo.json").write_text(json.dumps({
        "format_version": 1, "preset": "test", "label_version": "v1", "partial": False,
        "counts": {"networks": len(rows)}, "code_version": "0.1.0"}, indent=2))
    (folder / "README.md").write_text(CARD)
    write_manifest(folder)
    # private things that are never part of a release
    (folder / ".build").mkdir()
    (folder / ".build" / "claim-000.json").write_text("{}")
    (folder / "weights" / "nopost" / ".tmp-delay0100-000.safetensors.x").write_bytes(b"partial")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    return sorted(["README.md", "zoo.json", "metadata/networks.parquet", MANIFEST_PATH]
                  + [f"weights/nopost/delay{d:04d}-000.safetensors" for d in DELAYS]
                  + [f"curves/nopost/delay{d:04d}-000.parquet" for d in DELAYS])


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release") / "zoo"
    folder.mkdir()
    files = _write_release(folder)
    return folder, files


@pytest.fixture(scope="module")
def published(release, hub_server):
    """The release committed into the served repo zoo-test/rnn, tagged v1.0; returns (repo_id, commit)."""
    folder, _ = release
    files = hub.push(folder, "zoo-test/rnn", dry_run=True)
    commit = hub_server.add_dataset("zoo-test/rnn", folder, files, tag="v1.0")
    return "zoo-test/rnn", commit


def _shard(delay: int, kind: str = "weights") -> str:
    ext = "safetensors" if kind == "weights" else "parquet"
    return f"{kind}/nopost/delay{delay:04d}-000.{ext}"


def _snapshot_files(cache: Path, repo_id: str) -> set[str]:
    snaps = cache / f"datasets--{repo_id.replace('/', '--')}" / "snapshots"
    return {p.relative_to(snap).as_posix() for snap in snaps.iterdir() for p in snap.rglob("*")
            if p.is_file() or p.is_symlink()}


# -- no server needed ----------------------------------------------------------------------------------
def test_parse_repo_id():
    assert hub_env.parse_repo_id("org/name") == ("org/name", None)
    assert hub_env.parse_repo_id("org/name@v1.0") == ("org/name", "v1.0")
    assert hub_env.parse_repo_id("hf://datasets/org/my.zoo-2@refs/pr/1") == ("org/my.zoo-2", "refs/pr/1")
    for bad in ("name", "org/name/extra", "org/", "org/na--me", "org/name@", "org/name@a@b"):
        with pytest.raises(InvalidChoiceError):
            hub_env.parse_repo_id(bad)
    assert hub_env.looks_like_repo_id("org/name@v1.0")
    assert not hub_env.looks_like_repo_id("./org/name")
    assert not hub_env.looks_like_repo_id("/data/zoo")
    assert not hub_env.looks_like_repo_id("zoo")


def test_push_dry_run_lists_release_files(release, monkeypatch):
    folder, files = release
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a dry run makes no request at all
    assert hub.release_files(folder) == files
    assert hub.push(folder, "zoo-test/rnn", dry_run=True) == files


def test_push_refuses_unlisted_and_corrupt_files(release, tmp_path):
    folder = tmp_path / "zoo"
    shutil.copytree(release[0], folder)
    (folder / "stray.txt").write_text("not in the manifest")
    with pytest.raises(Exception, match="not in its manifest"):
        hub.push(folder, "zoo-test/rnn", dry_run=True)
    (folder / "stray.txt").unlink()
    with open(folder / _shard(200), "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\1\2\3\4")
    with pytest.raises(ChecksumMismatchError):
        hub.push(folder, "zoo-test/rnn", dry_run=True)


class RecordingHub:
    """A stand-in for HfApi (olah has no upload endpoints) that keeps the repo's files and records every call.

    The repo changes only in ``create_commit``, all operations at once, as on the Hub; ``visible`` lists what a
    reader of ``main`` sees after each call."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files = dict(files or {})
        self.calls: list[tuple] = []
        self.visible: list[dict[str, bytes]] = []
        self.tags: dict[str, str] = {}
        self.commits = 0

    def __call__(self, **kw):  # used as the HfApi class
        self.calls.append(("init", kw))
        return self

    def _seen(self, *call):
        self.calls.append(call)
        self.visible.append(dict(self.files))

    def create_repo(self, repo_id, **kw):
        self._seen("create_repo", repo_id, kw)

    def list_repo_refs(self, repo_id, **kw):
        self._seen("list_repo_refs", repo_id, kw)
        return type("Refs", (), {"tags": [type("Tag", (), {"name": t})() for t in self.tags]})()

    def list_repo_files(self, repo_id, **kw):
        self._seen("list_repo_files", repo_id, kw)
        return sorted(self.files)

    def preupload_lfs_files(self, repo_id, additions, **kw):
        self._seen("preupload_lfs_files", repo_id, [a.path_in_repo for a in additions])

    def create_commit(self, repo_id, operations, **kw):
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        for op in operations:
            if isinstance(op, CommitOperationAdd):
                src = op.path_or_fileobj
                self.files[op.path_in_repo] = src if isinstance(src, bytes) else Path(src).read_bytes()
            elif isinstance(op, CommitOperationDelete):
                del self.files[op.path_in_repo]
        self.commits += 1
        self._seen("create_commit", repo_id, [op.path_in_repo for op in operations], kw)
        return type("Info", (), {"oid": f"{self.commits:040d}"})()

    def create_tag(self, repo_id, **kw):
        self.tags[kw["tag"]] = kw["revision"]
        self._seen("create_tag", repo_id, kw)


def _whole_release(files: dict[str, bytes]) -> bool:
    """True if ``files`` hold one complete release: every file its manifest lists, with that sha256."""
    if MANIFEST_PATH not in files:
        return not files or set(files) <= {".gitattributes"}
    from zoo.manifest import parse_manifest

    listed = parse_manifest(files[MANIFEST_PATH].decode())
    return all(rel in files and hashlib.sha256(files[rel]).hexdigest() == d for rel, d in listed.items())


def test_push_is_one_commit_a_reader_never_sees_half_a_release(release, monkeypatch, tmp_path):
    """With a recording fake of the Hub API: an older release is replaced in one commit (its extra files
    deleted), the commit is tagged, and after every call a reader of main sees one whole release."""
    folder, files = release
    old = {".gitattributes": b"*.safetensors filter=lfs\n", "weights/nopost/old-000.safetensors": b"old weights",
           "README.md": b"old card"}
    old[MANIFEST_PATH] = (f"{hashlib.sha256(b'old weights').hexdigest()}  weights/nopost/old-000.safetensors\n"
                          .encode())
    fake = RecordingHub(old)
    monkeypatch.setattr(hub, "HfApi", fake)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert hub.push(folder, "zoo-test/rnn@v2.0", private=True) == files
    names = [c[0] for c in fake.calls]
    assert names.count("create_commit") == 1 and names[-2:] == ["create_commit", "create_tag"]
    assert names.index("preupload_lfs_files") < names.index("create_commit")
    assert fake.calls[0][1]["token"] == "hf_test"
    assert all(_whole_release(v) for v in fake.visible)  # between any two calls: old or new, never half
    assert fake.visible[names.index("create_commit") - 2] == old  # before the commit: the old release intact
    assert set(fake.files) == set(files) | {".gitattributes"}  # the old shard is gone
    commit_ops = fake.calls[names.index("create_commit")][2]
    assert "weights/nopost/old-000.safetensors" in commit_ops
    assert fake.tags == {"v2.0": f"{1:040d}"}
    assert fake.calls[-1][2]["tag"] == "v2.0"


def test_pushed_card_names_the_repo_and_revision(tmp_path, monkeypatch, smoke_zoo):
    folder = tmp_path / "zoo"
    shutil.copytree(smoke_zoo, folder)
    assert 'load_zoo("ORG/NAME"' in (folder / "README.md").read_text()
    fake = RecordingHub()
    monkeypatch.setattr(hub, "HfApi", fake)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    hub.push(folder, "my-lab/rnn-zoo", revision="v1.0")
    card = fake.files["README.md"].decode()
    assert 'load_zoo("my-lab/rnn-zoo@v1.0"' in card and "ORG/NAME" not in card
    assert (folder / "README.md").read_text().count("ORG/NAME") >= 1  # the local folder is left as it was


def test_push_adds_the_explorer_in_the_same_commit(tmp_path, monkeypatch, smoke_zoo):
    pytest.importorskip("plotly")
    from zoo.explore import explorer_files

    fake = RecordingHub({"explorer/old.js": b"x"})
    monkeypatch.setattr(hub, "HfApi", fake)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    extra, _ = explorer_files(smoke_zoo, tmp_path / "work", load_as="my-lab/rnn-zoo@v1.0", per_cell=0, n_boot=0)
    files = hub.push(smoke_zoo, "my-lab/rnn-zoo", revision="v1.0", extra_files=extra)
    assert set(extra) <= set(files) and "explorer/index.html" in fake.files
    assert fake.files["explorer/data.js"] == extra["explorer/data.js"].read_bytes()
    assert "explorer/old.js" not in fake.files  # an older explorer's files go with the same commit
    assert [c[0] for c in fake.calls].count("create_commit") == 1
    assert not (smoke_zoo / "explorer").exists()


# -- against the server --------------------------------------------------------------------------------
def test_push_without_token(release, hub_server):
    folder, _ = release
    with pytest.raises(TokenMissingError, match="hf auth login"):
        hub.push(folder, "zoo-test/rnn", revision="v1.0")


def test_subset_download_then_offline(published, release, hub_server, monkeypatch):
    repo_id, commit = published
    folder, _ = release
    cache = hub_env.hub_cache_dir()
    src = hub_source.HubSource(f"{repo_id}@v1.0")
    assert src.commit == commit and src.root.name == commit
    assert src.read_info()["preset"] == "test"
    meta = src.read_metadata()
    pd.testing.assert_frame_equal(meta, pd.read_parquet(folder / "metadata" / "networks.parquet"))
    assert src.read_manifest() == read_manifest(folder)
    assert "zoo-test/rnn@v1.0" in src.description

    subset = meta[meta.delay_ms == 200]
    wanted = hub.files_for_networks(meta, subset.net_id)
    assert wanted == [_shard(200, "curves"), _shard(200)]
    paths = src.local_paths(wanted)
    for rel, p in paths.items():
        assert p.read_bytes() == (folder / rel).read_bytes()
    assert _snapshot_files(cache, repo_id) == {MANIFEST_PATH, "zoo.json", "metadata/networks.parquet", *wanted}
    n_blobs = len(list((cache / "datasets--zoo-test--rnn" / "blobs").iterdir()))
    assert n_blobs == 5  # the other shards were never fetched

    # offline (env) with a recording endpoint: same files, no request at all
    from hub_server import RequestRecorder

    with RequestRecorder() as rec:
        monkeypatch.setenv("HF_ENDPOINT", rec.endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        off = hub_source.HubSource(f"{repo_id}@v1.0")
        assert off.commit == commit and off.offline
        assert off.local_paths(wanted) == paths
        with pytest.raises(NotCachedError, match="zoo pull") as exc:
            off.local_paths([_shard(100), _shard(200)])
        assert exc.value.missing == [_shard(100)]
        assert _shard(100) in str(exc.value) and _shard(200) not in str(exc.value)
        with pytest.raises(NotCachedError):  # `main` was never resolved online
            hub_source.HubSource(repo_id)
        monkeypatch.delenv("HF_HUB_OFFLINE")
        pinned = hub_source.HubSource(f"{repo_id}@{commit}", local_files_only=True)  # explicit flag, by commit
        assert pinned.local_path(_shard(200)) == paths[_shard(200)]
        assert rec.requests == []
    # still no shard of the other delays in the cache
    assert _snapshot_files(cache, repo_id) == {MANIFEST_PATH, "zoo.json", "metadata/networks.parquet", *wanted}


def test_offline_nothing_cached(published, hub_server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotCachedError, match=r"zoo pull zoo-test/rnn@v1\.0"):
        hub_source.HubSource("zoo-test/rnn@v1.0")


def test_missing_repo_and_revision(published, hub_server):
    with pytest.raises(SourceNotFoundError, match="not found"):
        hub_source.HubSource("zoo-test/does-not-exist")
    with pytest.raises(SourceNotFoundError):
        hub_source.HubSource("zoo-test/rnn@v9.9")


def test_corrupt_file_on_the_hub(release, hub_server, tmp_path):
    folder = tmp_path / "zoo"
    shutil.copytree(release[0], folder)
    bad = _shard(300)
    data = bytearray((folder / bad).read_bytes())
    data[-1] ^= 0xFF  # the manifest still lists the good hash
    (folder / bad).write_bytes(bytes(data))
    bad_sha = hashlib.sha256(data).hexdigest()
    files = hub.release_files(folder)
    commit = hub_server.add_dataset("zoo-test/corrupt", folder, files, tag="v1.0")

    src = hub_source.HubSource("zoo-test/corrupt@v1.0")
    assert src.commit == commit
    src.local_paths([_shard(100)])  # good files still load
    with pytest.raises(ChecksumMismatchError) as exc:
        src.local_paths([bad, _shard(200)])
    assert exc.value.path == bad and bad in str(exc.value) and exc.value.actual == bad_sha
    repo_cache = hub_env.hub_cache_dir() / "datasets--zoo-test--corrupt"
    assert not (repo_cache / "snapshots" / commit / bad).exists()
    assert all(hashlib.sha256(b.read_bytes()).hexdigest() != bad_sha for b in (repo_cache / "blobs").iterdir())
    with pytest.raises(NotCachedError):  # nothing bad left for an offline reader to trust
        hub_source.HubSource("zoo-test/corrupt@v1.0", local_files_only=True).local_paths([bad])
    with pytest.raises(ChecksumMismatchError):  # downloaded again and refused again
        src.local_paths([bad])


def test_files_in_the_cache_wide_blob_store(published, hub_server):
    """huggingface_hub keeps the real Hub's Xet files in one store for the whole cache (<cache>/blobs/ab/<hash>),
    which a repo's blob links to: such files are read, and a bad one is evicted with every link to it."""
    repo_id, _ = published
    good, bad = _shard(100), _shard(200)
    paths = hub_source.HubSource(f"{repo_id}@v1.0").local_paths([good, bad])
    data = {rel: paths[rel].read_bytes() for rel in (good, bad)}
    cache = hub_env.hub_cache_dir()
    store = {}
    for rel in (good, bad):  # the layout huggingface_hub makes for a Xet file
        blob = paths[rel].resolve()  # <repo>/blobs/<etag>
        xet_hash = hashlib.sha256(rel.encode()).hexdigest()
        store[rel] = cache / "blobs" / xet_hash[:2] / xet_hash
        store[rel].parent.mkdir(parents=True, exist_ok=True)
        blob.rename(store[rel])
        blob.symlink_to(os.path.relpath(store[rel], blob.parent))
    off = hub_source.HubSource(f"{repo_id}@v1.0", local_files_only=True)
    assert off.local_path(good).read_bytes() == data[good]
    links = [paths[bad], paths[bad].parent / os.readlink(paths[bad])]
    store[bad].write_bytes(b"x" + data[bad][1:])
    with pytest.raises(ChecksumMismatchError):
        off.local_paths([bad])
    assert not any(p.exists() or p.is_symlink() for p in (*links, store[bad]))  # nothing bad left to trust
    assert store[good].read_bytes() == data[good]


def test_pull_partial_release(published, release, hub_server, tmp_path):
    repo_id, commit = published
    meta = pd.read_parquet(release[0] / "metadata" / "networks.parquet")
    ids = list(meta.net_id[meta.delay_ms == 100]) + ["nopost-d300-1"]
    out = hub.pull(f"{repo_id}@v1.0", out=tmp_path / "partial", net_ids=ids)
    assert verify_folder(out)
    got = sorted(read_manifest(out))
    assert got == sorted(["zoo.json", "metadata/networks.parquet",
                          _shard(100), _shard(100, "curves"), _shard(300), _shard(300, "curves")])
    assert (out / "README.md").read_text() == CARD  # the card comes along, outside the manifest
    assert hub.release_files(out) == sorted([*got, MANIFEST_PATH, "README.md"])
    info = json.loads((out / "zoo.json").read_text())
    assert info["partial"] is True
    assert info["source"] == {"repo": repo_id, "revision": "v1.0", "commit": commit,
                              "networks_selected": 5, "networks_total": 12}
    sub = pd.read_parquet(out / "metadata" / "networks.parquet")
    assert list(sub.net_id) == ids
    assert pq.read_schema(out / "metadata" / "networks.parquet").equals(
        pq.read_schema(release[0] / "metadata" / "networks.parquet"), check_metadata=False)
    with pytest.raises(InvalidChoiceError):
        hub.pull(repo_id, revision="v1.0", net_ids=["no-such-net"])


def test_load_dataset_reads_the_card_config(published, hub_server, tmp_path):
    import datasets

    repo_id, commit = published
    snap = hub.pull(f"{repo_id}@v1.0", net_ids=["nopost-d100-0"])
    assert snap.name == commit and (snap / "README.md").is_file()
    assert not (snap / _shard(200)).exists()
    ds = datasets.load_dataset(str(snap), cache_dir=str(tmp_path / "ds_cache"))
    assert list(ds) == ["train"] and ds["train"].num_rows == 12
    assert "weights_file" in ds["train"].column_names


def test_card_edited_on_the_hub_breaks_nothing(release, hub_server, tmp_path):
    """A card fixed on the Hub after the release (staff pull requests do that) leaves load_zoo and pull
    working; every data file stays checked. Also for an older manifest that still lists the card."""
    from zoo import load_zoo

    for repo_id, old_style in (("zoo-test/card-edit", False), ("zoo-test/card-edit-old", True)):
        folder = tmp_path / repo_id.split("/")[1]
        shutil.copytree(release[0], folder)
        if old_style:  # releases written before the card left the manifest
            entries = read_manifest(folder)
            entries["README.md"] = hashlib.sha256((folder / "README.md").read_bytes()).hexdigest()
            from zoo.manifest import format_manifest

            (folder / MANIFEST_PATH).write_text(format_manifest(entries))
        files = hub.release_files(folder)
        hub_server.add_dataset(repo_id, folder, files, tag="v1.0")
        (folder / "README.md").write_text(CARD.replace("A tiny fake release", "A tiny fake release (typo fixed)"))
        hub_server.add_dataset(repo_id, folder, files, message="Update README.md")  # main moves on
        z = load_zoo(repo_id, delay=200)
        assert len(z) == N_PER_SHARD and z.weights()["W_rec.weight"].shape[0] == N_PER_SHARD
        out = hub.pull(repo_id, out=tmp_path / f"pulled-{old_style}")
        assert "typo fixed" in (out / "README.md").read_text()
        assert verify_folder(out)


def test_hub_source_is_a_source(published, release):
    """The Hub source implements zoo.sources.Source; a Zoo over its interface members alone reads everything."""
    import torch
    from test_api_sources import OnlyInterface

    from zoo.api import Zoo
    from zoo.sources import Source

    repo_id, commit = published
    folder, _ = release
    src = hub_source.HubSource(f"{repo_id}@v1.0")
    assert isinstance(src, Source) and src.kind == "hub" and src.commit == commit
    assert src.label == "zoo-test/rnn@v1.0" and src.label in src.description
    assert src.manifest == src.read_manifest() == read_manifest(folder) and src.read_manifest() is not src.manifest
    z = Zoo(OnlyInterface(src), src.read_metadata(), src.read_info()).filter(delay=300)
    assert z.fetch(curves=True) == [_shard(300, "curves"), _shard(300)]
    w = z.weights()
    assert w["W_rec.weight"].shape == (N_PER_SHARD, 100, 100)
    assert torch.equal(w["W_in.bias"][2], z[2].state_dict()["W_in.bias"])
    assert len(z[1].curves()) == 5

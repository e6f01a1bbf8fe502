"""Issue 25: hostile release folders, re-runs, concurrent readers and killed rewrites.

One tiny real build (4 networks, 2 shards) made once for the module through the CLI; each case works on its
own copy. Every call that could hang (a FIFO, /dev/zero) runs under a deadline, so a hang fails the test
instead of blocking CI. Each refusal asserts the error class and that the message names the file or value.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from zoo import faults, layout, load_zoo, store
from zoo.cli import app
from zoo.errors import (
    ChecksumMismatchError,
    CorruptFileError,
    InvalidChoiceError,
    ReleaseFolderError,
    UnsafeFileError,
    UnverifiedReleaseError,
)
from zoo.manifest import format_manifest, read_manifest, sha256_file, verify_folder
from zoo.publish import pending

pytestmark = pytest.mark.slow

runner = CliRunner()
ARGS = ["--preset", "smoke", "--lr", "0.1", "--delay", "0", "--delay", "40", "--seeds", "2", "--epochs", "4",
        "--shard-size", "2"]
DEADLINE_S = 60.0
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def deadline(fn, *args, timeout: float = DEADLINE_S, **kwargs):
    """``fn(*args, **kwargs)`` in a thread; fail the test if it has not returned after ``timeout`` seconds."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {timeout} s (a hang)")
    if "error" in out:
        raise out["error"]
    return out.get("value")


def cli(*args: str):
    return deadline(runner.invoke, app, [str(a) for a in args])


def one_line_error(result, *names: str) -> str:
    """The output of a refused command: exit 2, one `error:` line (no traceback) naming every ``names``."""
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text and result.exception is None or isinstance(result.exception, SystemExit), text
    flat = " ".join(text.split())
    for name in names:
        assert " ".join(str(name).split()) in flat, (name, text)
    return text


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "zoo"
    r = subprocess.run([sys.executable, "-m", "zoo.cli", "build", *ARGS, "--out", str(out)], env=ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture
def rel(built, tmp_path) -> Path:
    """A private copy of the built release (with its .build folder)."""
    out = tmp_path / "zoo"
    shutil.copytree(built, out, symlinks=True)
    return out


def shard_of(folder: Path) -> str:
    return sorted(r for r in read_manifest(folder) if r.startswith(layout.WEIGHTS_DIR))[0]


# -- 1. regular files inside the release, or refused -------------------------------------------------------
@pytest.mark.parametrize("what", ["dev-zero", "fifo", "folder", "link-out"])
def test_a_shard_that_is_not_a_regular_file_inside_is_refused(rel, tmp_path, what):
    shard = shard_of(rel)
    p = rel / shard
    if what == "link-out":  # the same bytes outside the release: the checksum alone would pass
        outside = tmp_path / "outside.safetensors"
        shutil.copyfile(p, outside)
        p.unlink()
        p.symlink_to(outside)
    else:
        p.unlink()
        if what == "dev-zero":
            p.symlink_to("/dev/zero")
        elif what == "fifo":
            os.mkfifo(p)
        else:
            p.mkdir()
    for verify in (True, "full", False):
        z = deadline(load_zoo, rel, verify=verify)
        with pytest.raises(UnsafeFileError, match=p.name):
            deadline(z.weights)
    with pytest.raises(UnsafeFileError, match=p.name):
        deadline(verify_folder, rel)
    one_line_error(cli("push", rel, "--repo", "org/name", "--dry-run"), p.name)
    one_line_error(cli("label", rel), p.name)


@pytest.mark.parametrize("rel_path", [layout.METADATA_PATH, layout.MANIFEST_PATH, layout.INFO_PATH])
def test_core_files_linked_to_dev_zero_never_hang(rel, rel_path):
    p = rel / rel_path
    p.unlink()
    p.symlink_to("/dev/zero")
    for command in ("ls", "info"):
        one_line_error(cli(command, rel), p.name)
    with pytest.raises((UnsafeFileError, UnverifiedReleaseError), match=p.name):
        deadline(load_zoo, rel)


def test_the_card_is_read_safely_by_push(rel):
    p = rel / layout.CARD_PATH
    p.unlink()
    p.symlink_to("/etc/passwd")
    one_line_error(cli("push", rel, "--repo", "org/name", "--dry-run"), "README.md")


# -- 2. labelling and packaging never bless damaged or foreign data -----------------------------------------
def flip_a_byte(shard):
    """Damage one byte of a weight shard (inside its tensor data); returns the shard's path."""
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x01
    shard.write_bytes(bytes(data))
    return shard


def test_label_refuses_a_damaged_shard_and_keeps_the_manifest(rel):
    shard = flip_a_byte(rel / shard_of(rel))
    before = (rel / layout.MANIFEST_PATH).read_bytes()
    r = cli("label", rel)
    one_line_error(r, "checksum mismatch", shard.name)
    assert (rel / layout.MANIFEST_PATH).read_bytes() == before
    with pytest.raises(ChecksumMismatchError, match=shard.name):
        load_zoo(rel, verify="full").weights()


def test_label_never_adopts_a_stray_file(rel):
    stray = rel / "weights" / "nopost" / "stray.safetensors"
    shutil.copyfile(rel / shard_of(rel), stray)
    r = cli("label", rel)
    assert r.exit_code == 0, r.output
    assert "weights/nopost/stray.safetensors" not in read_manifest(rel)
    verify_folder(rel)
    one_line_error(cli("push", rel, "--repo", "org/name", "--dry-run"), "stray.safetensors")


def test_diagnose_write_keeps_other_files_checked(rel):
    from zoo.analysis.dynamics import write_diagnostics

    shard = flip_a_byte(rel / shard_of(rel))
    df = pd.DataFrame({"net_id": store.read_table(rel / layout.METADATA_PATH)["net_id"], "x": 1.0})
    with pytest.raises(ChecksumMismatchError, match=shard.name):
        write_diagnostics(rel, df)
    assert layout.DIAGNOSTICS_PATH not in read_manifest(rel)


# -- 3. re-running is idempotent; rewrites are atomic for readers -------------------------------------------
def test_a_finished_build_run_again_does_nothing_and_says_so(rel):
    files = {p: p.read_bytes() for p in (rel / layout.MANIFEST_PATH, rel / layout.INFO_PATH,
                                          rel / layout.METADATA_PATH)}
    stamps = {p: p.stat().st_mtime_ns for p in files}
    r = subprocess.run([sys.executable, "-m", "zoo.cli", "build", *ARGS, "--out", str(rel)], env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing to do" in r.stdout
    assert {p: p.read_bytes() for p in files} == files
    assert {p: p.stat().st_mtime_ns for p in files} == stamps


def _writer_script(folder: Path, n: int) -> str:
    """A process that rewrites the release ``n`` times (a new generation each: metadata and zoo.json)."""
    return f"""
import sys
from zoo import release, store
folder = {str(folder)!r}
meta = store.read_table(folder + "/metadata/networks.parquet")
info = store.read_info(folder)
for i in range(1, {n} + 1):
    release.finalize_release(folder, meta.assign(generation=i), {{**info, "generation": i}})
print("done", flush=True)
"""


@pytest.mark.parametrize("writer", ["four-generations", "build-again", "label"])
def test_readers_see_old_or_new_while_a_writer_rewrites(rel, writer):
    """Readers load the release in a loop (metadata, zoo.json, weights) while another process rewrites it:
    four new generations (metadata and zoo.json differ each time), the same `zoo build` again, `zoo label`."""
    meta = store.read_table(rel / layout.METADATA_PATH)
    from zoo import release

    release.finalize_release(rel, meta.assign(generation=0), {**store.read_info(rel), "generation": 0})
    command = {"four-generations": [sys.executable, "-c", _writer_script(rel, 4)],
               "build-again": [sys.executable, "-m", "zoo.cli", "build", *ARGS, "--out", str(rel)],
               "label": [sys.executable, "-m", "zoo.cli", "label", str(rel)]}[writer]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failures, loads, mixed = [], [0], []

    def reader():
        while proc.poll() is None:
            try:
                z = load_zoo(rel)
                gens = set(z.metadata["generation"])
                if len(gens) != 1 or gens != {z.info["generation"]}:
                    mixed.append((gens, z.info["generation"]))
                z.weights()
                loads[0] += 1
            except Exception as err:  # noqa: BLE001 - counted
                failures.append(repr(err))

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    out, err = proc.communicate(timeout=300)
    for t in threads:
        t.join(60)
    assert proc.returncode == 0, out + err
    print(f"{writer}: {loads[0]} loads, {len(failures)} failed, {len(mixed)} mixed")
    assert loads[0] > 0 and not failures and not mixed, (loads, failures[:3], mixed[:3])
    if writer == "four-generations":
        assert store.read_info(rel)["generation"] == 4
    verify_folder(rel)


@pytest.mark.parametrize("point", ["publish-switch", "publish-rename"])
def test_kill_during_relabel_leaves_a_loadable_release(rel, point):
    """SIGKILL inside `zoo label`, after its journal or within its renames (the new release, read from the
    journal's files); the next `zoo label` finishes it and cleans up."""
    before = load_zoo(rel, verify="full")
    n = len(before)
    r = subprocess.run([sys.executable, "-m", "zoo.cli", "label", str(rel)], timeout=300, capture_output=True,
                       text=True, env={**ENV, "ZOO_FAULT_POINT": f"{point}:1"})
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    z = deadline(load_zoo, rel, verify="full")  # reading writes nothing: it sees old or new, whole
    assert len(z) == n
    z.weights()
    r = cli("label", rel)
    assert r.exit_code == 0, r.output
    assert not (rel / layout.PUBLISH_JOURNAL).exists() and not pending(rel)
    assert not [p for p in rel.rglob(".tmp-*") if ".build" not in p.parts]
    verify_folder(rel)
    assert len(load_zoo(rel, verify="full")) == n


@pytest.mark.parametrize("point", ["publish-switch", "publish-rename"])
def test_a_rewrite_killed_in_its_switch_reads_as_the_new_generation(rel, point):
    """Killed after the journal (nothing renamed yet) or after the first rename: readers see generation 1
    whole (metadata and zoo.json), and write nothing; the next rewrite finishes the switch first."""
    env = {**ENV, "ZOO_FAULT_POINT": f"{point}:1"}
    r = subprocess.run([sys.executable, "-c", _writer_script(rel, 1)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    assert (rel / layout.PUBLISH_JOURNAL).exists()
    tree = sorted(p.relative_to(rel).as_posix() for p in rel.rglob("*"))
    z = deadline(load_zoo, rel, verify="full")
    assert set(z.metadata["generation"]) == {1} and z.info["generation"] == 1
    z.weights()
    assert sorted(p.relative_to(rel).as_posix() for p in rel.rglob("*")) == tree  # reading wrote nothing
    one_line_error(cli("push", rel, "--repo", "org/name", "--dry-run"), "interrupted")
    from zoo import release

    meta = store.read_table(z.source.local_path(layout.METADATA_PATH))
    release.finalize_release(rel, meta.assign(generation=2), {**z.info, "generation": 2})
    assert not (rel / layout.PUBLISH_JOURNAL).exists()
    assert store.read_info(rel)["generation"] == 2
    verify_folder(rel)


def test_kill_during_repackage_leaves_a_loadable_release(rel):
    info = json.loads((rel / layout.INFO_PATH).read_text())
    info["parts_sha256"] = "0" * 64  # out of date: the next package rewrites
    (rel / layout.INFO_PATH).write_text(json.dumps(info))
    (rel / layout.MANIFEST_PATH).write_text(format_manifest(
        {**read_manifest(rel), layout.INFO_PATH: sha256_file(rel / layout.INFO_PATH)}))
    r = subprocess.run([sys.executable, "-m", "zoo.cli", "package", str(rel)], timeout=300, capture_output=True,
                       text=True, env={**ENV, "ZOO_FAULT_POINT": "publish-rename:1"})
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    assert len(deadline(load_zoo, rel, verify="full")) == 4
    r = cli("package", rel)
    assert r.exit_code == 0, r.output
    verify_folder(rel)
    assert not [p for p in rel.rglob(".tmp-*") if ".build" not in p.parts]


# -- 4. an output folder is never taken over ----------------------------------------------------------------
def test_build_and_pull_refuse_a_foreign_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    (out / "data.csv").write_text("a,b\n")
    one_line_error(cli("build", *ARGS, "--out", out), str(out), "--force")
    one_line_error(cli("pull", "org/name", "--out", out), str(out), "--force")
    assert (out / "README.md").read_text() == "my notes"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data.csv"]


@pytest.mark.parametrize("bad", [["--shard", "3/2"], ["--executor", "nope"], ["--batch-size", "0"],
                                 ["--shard-size", "0"], ["--seeds", "1000000000000"]])
def test_a_rejected_build_leaves_nothing(tmp_path, bad):
    out = tmp_path / "new"
    args = [a for a in ARGS]
    for opt in bad[::2]:
        if opt in args:
            i = args.index(opt)
            del args[i:i + 2]
    one_line_error(cli("build", *args, *bad, "--out", out), bad[1])
    assert not out.exists()


def test_out_that_is_a_file_or_unwritable_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    one_line_error(cli("build", *ARGS, "--out", f), str(f))
    one_line_error(cli("build", *ARGS, "--out", "/proc/zoo-release"), "/proc/zoo-release")
    bad = Path(os.fsdecode(bytes(tmp_path) + b"/\xffzoo"))  # not valid UTF-8
    one_line_error(cli("build", *ARGS, "--out", bad), "\\xffzoo", "not valid UTF-8")
    assert not bad.exists()


# -- 5. every failure is one clear line ---------------------------------------------------------------------
def test_a_full_disk_while_relabelling_is_one_line_and_loses_nothing(rel):
    before = (rel / layout.MANIFEST_PATH).read_bytes()

    def full(point, before_kill=None):
        if point == "write-rename":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(rel / "zoo.json"))

    with faults.installed(full):
        r = cli("label", rel)
    one_line_error(r, "No space left on device", str(rel))
    assert (rel / layout.MANIFEST_PATH).read_bytes() == before
    verify_folder(rel)
    assert not [p for p in rel.rglob(".tmp-*") if ".build" not in p.parts]


def _edit_metadata(folder: Path, edit) -> Path:
    meta = store.read_table(folder / layout.METADATA_PATH)
    store.write_table(folder / layout.METADATA_PATH, edit(meta))
    m = read_manifest(folder)
    m[layout.METADATA_PATH] = sha256_file(folder / layout.METADATA_PATH)
    (folder / layout.MANIFEST_PATH).write_text(format_manifest(m))
    return folder / layout.METADATA_PATH


@pytest.mark.parametrize("edit,field", [
    (lambda m: m.drop(columns="net_id"), "net_id"),
    (lambda m: m.drop(columns="weights_file"), "weights_file"),
    (lambda m: pd.concat([m, m], ignore_index=True), "net_id"),
    (lambda m: m.astype({"delay_ms": str}), "delay_ms"),
])
def test_a_bad_metadata_table_is_refused_at_open(rel, edit, field):
    path = _edit_metadata(rel, edit)
    with pytest.raises(CorruptFileError, match=f"networks.parquet: bad column '{field}'"):
        load_zoo(rel)
    one_line_error(cli("ls", rel), str(path), field)


def test_a_config_cell_that_is_not_json_names_the_network(rel):
    def edit(m):
        m.loc[0, "config"] = "{not json"
        return m

    _edit_metadata(rel, edit)
    z = load_zoo(rel)
    with pytest.raises(CorruptFileError, match="config of network"):
        z[0].model()


@pytest.mark.parametrize("filters", [dict(lr="abc"), dict(delay={"a": 1}), dict(delay=("a", "z")), dict(lr=[]),
                                     dict(delay=(100, 0))])
def test_bad_filter_values_are_refused(rel, filters):
    key, value = next(iter(filters.items()))
    with pytest.raises(InvalidChoiceError, match=f"invalid {key}"):
        load_zoo(rel, **filters)


def test_an_unfinished_build_says_so(rel):
    (rel / layout.MANIFEST_PATH).unlink()
    with pytest.raises(UnverifiedReleaseError, match="re-run the same `zoo build`"):
        load_zoo(rel)


def test_a_release_rewrite_without_permission_is_one_line(rel, monkeypatch):
    import zoo.publish

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(rel / "metadata"))

    monkeypatch.setattr(zoo.publish, "make_temp", refuse)
    one_line_error(cli("label", rel), "Permission denied", str(rel))
    with pytest.raises(ReleaseFolderError, match="writable"):
        from zoo.analysis.dynamics import write_diagnostics

        write_diagnostics(rel, pd.DataFrame({"net_id": ["x"]}))

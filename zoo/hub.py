"""Releases on the Hugging Face Hub: ``zoo push`` and ``zoo pull``; every Hub name of the package.

A release on the Hub is a dataset repository holding the files of a local release folder (docs/format.md).
The source behind ``load_zoo("ORG/NAME@rev")`` is :class:`zoo.hub_source.HubSource`; repo ids, settings read
at call time (endpoint, cache, offline mode, token) and error messages are :mod:`zoo.hub_env`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from .errors import InvalidChoiceError, SourceNotFoundError, TokenMissingError, ZooError
from .hub_env import (
    LIBRARY_NAME,
    REPO_TYPE,
    find_token,
    hub_cache_dir,
    hub_endpoint,
    hub_errors,
    parse_repo_id,
)
from .hub_source import HubSource
from .layout import (
    CARD_PATH,
    DIAGNOSTICS_PATH,
    INFO_PATH,
    MANIFEST_PATH,
    METADATA_PATH,
    PUBLISH_JOURNAL,
    SNAPSHOTS_DIR,
    is_private_part,
    is_shard,
    snapshots_table_path,
)
from .manifest import (
    atomic_path,
    atomic_write_text,
    open_regular,
    read_manifest,
    release_file,
    verify_folder,
    write_manifest,
)
from .publish import check_output_folder

_PREUPLOAD_BATCH = 256  # files per preupload_lfs_files call of a push
_MAX_CARD = 16 * 1024 * 1024
_KEEP_ON_HUB = {".gitattributes"}  # files of the Hub repo a push never deletes


# -- release contents --------------------------------------------------------------------------------------
def release_files(folder: str | os.PathLike) -> list[str]:
    """The files of the release in ``folder`` that get uploaded, sorted: everything but hidden paths
    (``.build/``, ``.tmp-*``, ``.cache/``) and ``__pycache__``."""
    folder = Path(folder)
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not is_private_part(d)]
        rel_dir = Path(dirpath).relative_to(folder)
        for name in filenames:
            if not is_private_part(name) and os.path.isfile(os.path.join(dirpath, name)):
                out.append((rel_dir / name).as_posix())
    return sorted(out)


def select_networks(metadata, net_ids: Iterable[str]):
    """The rows of ``metadata`` for ``net_ids`` (in release order); unknown ids raise InvalidChoiceError."""
    ids = list(dict.fromkeys(str(i) for i in net_ids))
    known = set(metadata["net_id"])
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InvalidChoiceError("net_id", unknown[0] if len(unknown) == 1 else unknown[:10],
                                 hint=f"{len(unknown)} id(s) are not networks of this release")
    return metadata[metadata["net_id"].isin(ids)]


def files_for_networks(metadata, net_ids: Iterable[str] | None = None, snapshots: bool = False) -> list[str]:
    """The weight and curve shards (relative paths, sorted) that hold ``net_ids`` (all networks if None); with
    ``snapshots``, also their snapshot shards and tables."""
    rows = metadata if net_ids is None else select_networks(metadata, net_ids)
    files: set[str] = set()
    for col in ("weights_file", "curves_file"):
        if col in rows:
            files.update(f for f in rows[col].dropna().unique() if f)
    if snapshots and "snapshots_file" in rows:
        files.update(g for f in rows["snapshots_file"].dropna().unique() if f for g in (f, snapshots_table_path(f)))
    return sorted(files)


# -- pull --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pulled:
    """What :func:`fetch` got: the folder, the commit, the networks selected and the files (sizes, and which
    of them were not in the huggingface_hub cache before)."""

    path: Path  # the release folder written (``out``), else the cache snapshot
    label: str
    commit: str
    networks: int
    networks_total: int
    sizes: dict[str, int]  # every file of the (partial) release, manifest last -> bytes
    downloaded: frozenset[str]


def pull(repo_id: str, *, revision: str | None = None, out: str | os.PathLike | None = None,
         net_ids: Iterable[str] | None = None, cache_dir: str | os.PathLike | None = None,
         token: str | None = None, local_files_only: bool | None = None, snapshots: bool = False,
         force: bool = False) -> Path:
    """Fetch a release (or the part holding ``net_ids``) from the Hub into the cache.

    Downloads the small files and only the weight and curve shards of the selected networks (all if None);
    stored snapshots (``snapshots/``) only with ``snapshots``.
    With ``out``, materialises a local release folder there (metadata restricted to the selected networks,
    its own manifest, ``zoo.json`` with ``partial`` and the source repo/commit) and returns it; otherwise
    returns the cache snapshot folder. A non-empty ``out`` that holds no release is refused unless ``force``.
    """
    return fetch(repo_id, revision=revision, out=out, net_ids=net_ids, cache_dir=cache_dir, token=token,
                 local_files_only=local_files_only, snapshots=snapshots, force=force).path


def fetch(repo_id: str, *, revision: str | None = None, out: str | os.PathLike | None = None,
          net_ids: Iterable[str] | None = None, filters: dict | None = None,
          cache_dir: str | os.PathLike | None = None, token: str | None = None,
          local_files_only: bool | None = None, snapshots: bool = False, force: bool = False) -> Pulled:
    """:func:`pull`, with the networks also selected by ``filters`` (:func:`zoo.api.select`'s), and a report of
    what it got (``zoo pull`` prints it)."""
    if out is not None:
        check_output_folder(out, force)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    before = set(_cached_blobs(cache, parse_repo_id(repo_id)[0]).values())
    src = HubSource(repo_id, revision, cache_dir=cache, local_files_only=local_files_only, token=token)
    manifest = src.read_manifest()
    meta = src.read_metadata()
    selected = None if net_ids is None else list(select_networks(meta, net_ids)["net_id"])
    if filters and any(v is not None for v in filters.values()):
        from .api import select

        chosen = select(meta if selected is None else select_networks(meta, selected), **filters)
        if chosen.empty:
            raise ZooError(f"no network of {src.label} matches the filters")
        selected = list(chosen["net_id"])
    if selected is None:
        shards = [r for r in manifest if is_shard(r) and (snapshots or not r.startswith(SNAPSHOTS_DIR))]
    else:
        shards = files_for_networks(meta, selected, snapshots=snapshots)
    paths = src.local_paths([r for r in manifest if not is_shard(r)] + shards)
    card = src.card_path()  # documentation: fetched for the reader, never checked
    path = src.root if out is None else _materialise(src, paths, selected, len(meta), Path(out), card)
    files = [*sorted(paths), MANIFEST_PATH]
    blobs = _cached_blobs(cache, src.repo_id)
    n_selected = len(meta) if selected is None else len(selected)
    return Pulled(path=path, label=src.label, commit=src.commit, networks=n_selected, networks_total=len(meta),
                  sizes={f: (src.root / f).stat().st_size for f in files},
                  downloaded=frozenset(f for f in files if blobs.get((src.commit, f)) not in before))


def _cached_blobs(cache_dir: Path, repo_id: str) -> dict[tuple[str, str], Path]:
    """(commit, path in the repo) -> blob, of the Hub dataset ``repo_id`` in the huggingface_hub cache now
    (its own scan, :func:`huggingface_hub.scan_cache_dir`)."""
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return {}
    return {(rev.commit_hash, f.file_path.relative_to(rev.snapshot_path).as_posix()): f.blob_path
            for repo in info.repos if repo.repo_id == repo_id and repo.repo_type == REPO_TYPE
            for rev in repo.revisions for f in rev.files}


def _filter_table(src_path: Path, dest: Path, net_ids: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(src_path)
    if "net_id" in table.column_names:
        ids = pc.cast(table["net_id"], pa.string())
        table = table.filter(pc.is_in(ids, value_set=pa.array(net_ids, type=pa.string())))
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)


def _materialise(src: HubSource, paths: dict[str, Path], selected: list[str] | None, n_total: int,
                 out: Path, card: Path | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    old = read_manifest(out) if (out / MANIFEST_PATH).is_file() else {}
    partial = selected is not None and len(selected) < n_total
    info = src.read_info()
    for rel, p in paths.items():
        dest = out / rel
        if rel == INFO_PATH:
            continue
        if partial and rel in (METADATA_PATH, DIAGNOSTICS_PATH):
            _filter_table(p, dest, selected)
            continue
        with atomic_path(dest) as tmp:
            shutil.copyfile(p, tmp)
    if card is not None:
        with atomic_path(out / CARD_PATH) as tmp:
            shutil.copyfile(card, tmp)
    info["partial"] = bool(info.get("partial")) or partial
    info["source"] = {"repo": src.repo_id, "revision": src.revision, "commit": src.commit,
                      "networks_selected": len(selected) if selected is not None else n_total,
                      "networks_total": n_total}
    atomic_write_text(out / INFO_PATH, json.dumps(info, indent=2) + "\n")
    files = sorted(paths)
    for rel in set(old) - set(files) - {CARD_PATH}:  # left over from an earlier pull into the same folder
        (out / rel).unlink(missing_ok=True)
    write_manifest(out, files)
    return out


# -- push --------------------------------------------------------------------------------------------------
def _check_release(folder: Path) -> list[str]:
    if not (folder / MANIFEST_PATH).is_file():
        raise SourceNotFoundError(f"{folder} is not a zoo release: it has no {MANIFEST_PATH} (package it first)")
    if (folder / PUBLISH_JOURNAL).exists():
        raise ZooError(f"{folder} holds an interrupted rewrite ({PUBLISH_JOURNAL}): run the command that was "
                       f"interrupted again (zoo label / zoo package {folder}) to finish it before pushing")
    try:
        verify_folder(folder)
    except FileNotFoundError as e:
        raise SourceNotFoundError(str(e)) from e
    files = release_files(folder)
    for rel in files:  # the card too (not in the manifest): no link out of the release, nothing but files
        release_file(folder, rel)
    extra = sorted(set(files) - set(read_manifest(folder)) - {MANIFEST_PATH, CARD_PATH})
    if extra:
        shown = ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else "")
        raise ZooError(f"{len(extra)} file(s) in {folder} are not in its manifest: {shown}. Remove them or "
                       "rewrite the manifest (zoo.manifest.write_manifest) before pushing")
    return files


def push(folder: str | os.PathLike, repo_id: str, *, revision: str | None = None, private: bool = False,
         dry_run: bool = False, token: str | None = None, large: bool | None = None,
         commit_message: str | None = None, extra_files: dict[str, Path] | None = None) -> list[str]:
    """Upload the release in ``folder`` to the Hub dataset ``repo_id`` as ONE commit; tag it ``revision``.

    The manifest is verified first. The large files are uploaded ahead of the commit
    (``HfApi.preupload_lfs_files``, in batches, parallel), then a single ``create_commit`` adds every file of
    the release and deletes the files of an older release that this one lacks, so a reader of the branch sees
    either the old release or the new one, never half of each. The card's load snippet names the real repo id
    and revision. ``extra_files`` (path in the repo -> local file) go into the same commit beside the release
    (the browser explorer, :func:`zoo.explore.explorer_files`). ``dry_run`` returns the files that would be
    uploaded and makes no request. ``large`` is
    accepted for compatibility (every push is one commit). Returns the uploaded paths.
    """
    from .card import card_for_repo

    folder = Path(folder)
    rid, rev = parse_repo_id(repo_id)
    if revision is not None and rev is not None and revision != rev:
        raise InvalidChoiceError("revision", revision, hint=f"{repo_id!r} already names revision {rev!r}")
    revision = revision or rev
    files = _check_release(folder)
    extra = {rel: Path(p) for rel, p in (extra_files or {}).items() if rel not in files}
    if dry_run:
        return files + sorted(extra)
    tok = find_token(token)
    if not tok:
        raise TokenMissingError("pushing needs a Hugging Face token with write access: log in with "
                                "`hf auth login`, or set HF_TOKEN, or pass token=")
    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=tok, library_name=LIBRARY_NAME)
    message = commit_message or (f"zoo release {revision}" if revision else "zoo release")
    adds = []
    for rel in files:
        if rel == CARD_PATH:
            with open_regular(release_file(folder, rel)) as f:  # the card too: no link out, no FIFO
                text = card_for_repo(f.read(_MAX_CARD).decode(errors="replace"), rid, revision)
            adds.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=text.encode()))
        else:
            adds.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)))
    adds += [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(p)) for rel, p in sorted(extra.items())]
    files = files + sorted(extra)
    with hub_errors(rid, revision, endpoint, pushing=True):
        api.create_repo(rid, repo_type=REPO_TYPE, private=private, exist_ok=True)
        if revision:
            tags = {t.name for t in api.list_repo_refs(rid, repo_type=REPO_TYPE).tags}
            if revision in tags:
                raise ZooError(f"tag {revision!r} already exists in Hub dataset {rid}: release tags are not moved; "
                               "choose a new one")
        present = api.list_repo_files(rid, repo_type=REPO_TYPE)
        stale = sorted(set(present) - set(files) - _KEEP_ON_HUB)
        big = [a for a in adds if not isinstance(a.path_or_fileobj, bytes)]
        for i in range(0, len(big), _PREUPLOAD_BATCH):  # content first (LFS), nothing visible yet
            api.preupload_lfs_files(rid, additions=big[i:i + _PREUPLOAD_BATCH], repo_type=REPO_TYPE)
        ops = [*adds, *(CommitOperationDelete(path_in_repo=r) for r in stale)]
        info = api.create_commit(rid, operations=ops, commit_message=message, repo_type=REPO_TYPE,
                                 commit_description=f"{len(adds)} files; {len(stale)} files of an older release "
                                 "removed" if stale else f"{len(adds)} files")
        commit = getattr(info, "oid", None)
        if revision:
            api.create_tag(rid, repo_type=REPO_TYPE, tag=revision, revision=commit, tag_message=message)
    return files

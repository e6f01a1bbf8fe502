"""The source interface (zoo.sources.Source): both sources implement it, and the loader uses nothing else."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch

from zoo import api, hub, hub_source, sources
from zoo.api import bundled_sample_path
from zoo.errors import ChecksumMismatchError
from zoo.model import PARAM_NAMES
from zoo.sources import LocalSource, Source

#: the members the loader may use
INTERFACE = {n for n in dir(Source) if not n.startswith("_")}


class OnlyInterface(Source):
    """A source that forwards the interface members of another and has nothing else."""

    def __init__(self, inner: Source):
        self._inner = inner

    kind = property(lambda self: self._inner.kind)
    commit = property(lambda self: self._inner.commit)
    generation = property(lambda self: self._inner.generation)
    label = property(lambda self: self._inner.label)
    description = property(lambda self: self._inner.description)
    manifest = property(lambda self: self._inner.manifest)

    def read_info(self):
        return self._inner.read_info()

    def read_metadata(self):
        return self._inner.read_metadata()

    def local_paths(self, rel_paths):
        return self._inner.local_paths(rel_paths)


def test_the_interface():
    assert INTERFACE == {"kind", "commit", "generation", "label", "description", "manifest", "read_manifest",
                         "read_info", "read_metadata", "read_tables", "local_paths", "local_path"}
    assert inspect.isabstract(Source)
    for cls in (LocalSource, hub_source.HubSource, OnlyInterface):
        assert issubclass(cls, Source) and not inspect.isabstract(cls), cls
    assert api.LocalSource is LocalSource and hub.HubSource is hub_source.HubSource  # the old homes still work
    with pytest.raises(AttributeError):
        OnlyInterface(LocalSource(bundled_sample_path())).folder  # noqa: B018 - nothing but the interface


def test_a_local_source_conforms():
    src = api.open_source(None)
    assert isinstance(src, Source) and src.kind == "local" and src.commit is None
    assert src.label == src.description == str(bundled_sample_path())
    assert src.read_manifest() == src.manifest and src.read_manifest() is not src.manifest
    rel = "metadata/networks.parquet"
    assert src.local_path(rel) == src.local_paths([rel])[rel] == bundled_sample_path() / rel
    assert len(src.read_metadata()) == 68 and src.read_info()


def test_the_zoo_uses_only_interface_members():
    """A Zoo over a source that has nothing but the interface: every read works."""
    local = LocalSource(bundled_sample_path())
    src = OnlyInterface(local)
    meta = src.read_metadata()
    z = api.Zoo(src, meta, src.read_info()).filter(delay=40)
    assert repr(z).endswith(f"from {bundled_sample_path()})") and len(z) > 1
    assert z.fetch(curves=True)
    w = z.weights()
    net = z[1]
    assert all(torch.equal(w[n][1], net.state_dict()[n]) for n in PARAM_NAMES)
    assert len(net.curves()) == net.epochs_run and net.model() is not None


def test_the_loader_names_only_interface_members():
    """In zoo/api.py, every attribute read of a source (``.source.X``, ``src.X``) is an interface member."""
    tree = ast.parse(Path(api.__file__).read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value
            if (isinstance(base, ast.Attribute) and base.attr == "source") or (
                    isinstance(base, ast.Name) and base.id == "src"):
                used.add(node.attr)
    assert used and used <= INTERFACE, used - INTERFACE


def test_a_local_source_checks_with_the_shared_function(tmp_path):
    import shutil

    folder = tmp_path / "zoo"
    shutil.copytree(bundled_sample_path(), folder)
    rel = "weights/nopost/nopost-d040-000.safetensors"
    with open(folder / rel, "r+b") as f:
        f.seek(-3, 2)
        f.write(b"\0\1\2")
    src = sources.LocalSource(folder, verify="full")
    with pytest.raises(ChecksumMismatchError, match="re-download or rebuild") as e:
        src.local_path(rel)
    assert e.value.path == str(folder / rel)

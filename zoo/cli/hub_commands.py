"""The ``zoo`` commands that talk to the Hugging Face Hub: ``push`` and ``pull``, thin calls of
:func:`zoo.hub.push` and :func:`zoo.hub.fetch`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import report
from .options import Delay, Family, Force, Lr


def push(folder: Annotated[Path, typer.Argument(help="a release folder")],
         repo: Annotated[str, typer.Option("--repo", help="Hub dataset ORG/NAME")],
         revision: Annotated[str | None, typer.Option(help="tag the upload (e.g. v1.0)")] = None,
         private: Annotated[bool, typer.Option(help="create the dataset private")] = False,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="list the files and size; upload nothing")] = False,
         explorer: Annotated[bool | None, typer.Option("--explorer/--no-explorer", help="add the browser explorer "
                             "(zoo explore) as explorer/; default: only for releases of up to 10,000 networks")] = None):
    """Upload a release folder to a Hub dataset (manifest verified first)."""
    import tempfile

    from .. import hub
    from ..explore import explorer_files
    from ..plan import format_bytes

    with tempfile.TemporaryDirectory(prefix="zoo-push-explorer-") as work:
        target = f"{repo}@{revision}" if revision and "@" not in repo else repo
        extra, note = explorer_files(folder, work, include=explorer, load_as=target)
        if note:
            report.console.print(note, highlight=False)
        files = hub.push(folder, repo, revision=revision, private=private, dry_run=dry_run, extra_files=extra)
        local = {f: extra.get(f, folder / f) for f in files}
        sizes = {f: p.stat().st_size for f, p in local.items()}
    total = sum(sizes.values())
    if dry_run:
        for f in files:
            report.console.print(f"{sizes[f]:>14,d}  {f}", highlight=False)
        report.console.print(f"dry run: {len(files)} files, {format_bytes(total)} ({total:,d} bytes) would be uploaded "
                             f"to {repo}" + (f" and tagged {revision}" if revision else ""))
    else:
        report.console.print(f"uploaded {len(files)} files ({format_bytes(total)}) to {repo}"
                             + (f", tagged {revision}" if revision else ""))


def pull(repo: Annotated[str, typer.Argument(help="Hub dataset ORG/NAME[@REV]")], family: Family = None,
         delay: Delay = None, lr: Lr = None, mechanism: Annotated[str | None, typer.Option()] = None,
         outcome: Annotated[str | None, typer.Option()] = None,
         seed: Annotated[list[int] | None, typer.Option()] = None,
         out: Annotated[Path | None, typer.Option(help="write a (partial) release folder here")] = None,
         revision: Annotated[str | None, typer.Option(help="tag, branch or commit")] = None,
         snapshots: Annotated[bool, typer.Option(help="also the stored snapshots of the selected networks")] = False,
         force: Force = False):
    """Download a release (or the shards of the networks matching the filters) into the Hub cache or --out."""
    from .. import hub
    from ..plan import format_bytes

    filters = dict(family=family, delay=delay or None, lr=lr or None, mechanism=mechanism, outcome=outcome,
                   seed=seed or None)
    got = hub.fetch(repo, revision=revision, out=out, filters=filters, snapshots=snapshots, force=force)
    files = list(got.sizes)
    new = sum(got.sizes[f] for f in got.downloaded)
    report.console.print(f"{got.label} (commit {got.commit[:12]}): {got.networks} of {got.networks_total} "
                         f"networks, {len(files)} files, {format_bytes(sum(got.sizes.values()))}; downloaded now: "
                         f"{len(got.downloaded)} files, {format_bytes(new)}")
    for f in files:
        report.console.print(f"{got.sizes[f]:>14,d}  {f}" + ("" if f in got.downloaded else "  (cached)"),
                             highlight=False)
    report.console.print(f"{'release folder' if out else 'cache snapshot'}: {got.path}")

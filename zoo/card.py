"""The dataset card (the release's README.md), rendered from ``dataset_cards/template.md``."""

from __future__ import annotations

from string import Template

import pandas as pd

from .package_data import data_folder

FILES_SECTION = """\
| path | contents |
|---|---|
| `metadata/networks.parquet` | one row per network: configuration, final metrics, labels, where its weights live |
| `weights/<family>/<shard>.safetensors` | float32 weights of up to 512 networks, stacked on axis 0 (`W_in.weight` (K, 100, 2), `W_in.bias` (K, 100), `W_rec.weight` (K, 100, 100), `W_rec.bias` (K, 100), `W_out.weight` (K, 2, 100), `W_out.bias` (K, 2)); header metadata `net_ids` lists the rows |
| `curves/<family>/<shard>.parquet` | per-epoch `loss`, `accuracy`, `reliability`, `grad_norm` (W_rec gradient norm), lists of float32, one row per `net_id` |
| `diagnostics/networks.parquet` | (when present) dynamics diagnostics per network: fixed points, limit-cycle period and amplitude, `dyn_mechanism` |
| `zoo.json` | release info: format version, preset, label version, counts, whether the zoo is partial |
| `manifest.sha256` | sha256 of every file above (`sha256sum -c manifest.sha256` checks a download) |
| `explorer/` | (when pushed with it: `zoo push --explorer`) the browser explorer of `zoo explore`; not in the manifest |

Metadata columns: `net_id, family, seed, lr, delay_ms, post_ms, response_ms, tau_ms, nomemory, epochs,
epochs_run, diverged, final_loss, final_accuracy, final_reliability, first_learned_epoch (-1 = never), stable,
learned, outcome (no_learning / unstable / limit_cycle / slow_point), mechanism (limit_cycle / slow_point /
null), psd_ratio (NaN unless learned), label_version, config (JSON of the full training configuration),
weights_file, weights_index, curves_file` (and `reference_outcome` for zoos imported from the authors' files)."""


def _size_category(n: int) -> str:
    for lim, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < lim:
            return name
    return "100K<n<1M"


def _count_table(s: pd.Series) -> str:
    counts = s.fillna("(none)").value_counts().sort_index()
    return "\n".join(f"| {k} | {v} |" for k, v in counts.items()) or "| (none) | 0 |"


def _template_text() -> str:
    return data_folder("dataset_cards").joinpath("template.md").read_text(encoding="utf-8")


def _dtype(series: pd.Series) -> str:
    kind = series.dtype.kind
    if kind == "b":
        return "bool"
    if kind in "iu":
        return "int64"
    if kind == "f":
        return "float64"
    return "string"


def features_yaml(metadata: pd.DataFrame) -> str:
    """The ``dataset_info.features`` of the metadata table (YAML lines): every column with its dtype,
    ``outcome`` and ``mechanism`` as class labels."""
    from .labels import MECHANISMS, OUTCOMES

    labels = {"outcome": tuple(OUTCOMES), "mechanism": tuple(MECHANISMS)}
    lines = []
    for col in metadata.columns:
        lines.append(f"  - name: {col}")
        if col in labels:
            lines.append("    dtype:")
            lines.append("      class_label:")
            lines.append("        names:")
            lines += [f"          '{i}': {name}" for i, name in enumerate(labels[col])]
        else:
            lines.append(f"    dtype: {_dtype(metadata[col])}")
    return "\n".join(lines)


def license_text() -> str:
    return data_folder("dataset_cards").joinpath("license.md").read_text(encoding="utf-8")


def _provenance_text(info: dict) -> str:
    from .provenance import describe

    return "\n".join(f"- {label}: {value}" for label, value in describe(info.get("provenance") or {}))


def render_card(metadata: pd.DataFrame, info: dict, picture: str | None = None) -> str:
    """The card text; ``picture``: the release path of the phase diagram image, if there is one."""
    template = Template(_template_text())
    partial = info.get("partial")
    return template.substitute(
        features=features_yaml(metadata),
        picture=f"![Phase diagram of this zoo]({picture})\n" if picture else "",
        provenance=_provenance_text(info),
        pretty_name=info.get("pretty_name", "RNN short-term-memory zoo"),
        n_networks=len(metadata),
        size_category=_size_category(len(metadata)),
        code_version=info.get("code_version", ""),
        built_from=info.get("built_from") or f"preset {info.get('preset', 'custom')}",
        partial_note=" (partial: some shards of the preset are missing)" if partial else "",
        repo_hint=info.get("repo_id", "ORG/NAME"),
        family_table=_count_table(metadata["family"]),
        outcome_table=_count_table(metadata["outcome"]) if "outcome" in metadata else "| (unlabelled) | - |",
        label_version=info.get("label_version", "none"),
        files_section=FILES_SECTION,
    )


#: the placeholder of the card's load snippet until the release is pushed (:func:`card_for_repo`)
REPO_PLACEHOLDER = "ORG/NAME"


def card_for_repo(text: str, repo_id: str, revision: str | None = None) -> str:
    """The card as pushed to ``repo_id``: the load snippet names the real repo id (and revision)."""
    target = f"{repo_id}@{revision}" if revision else repo_id
    return text.replace(f'"{REPO_PLACEHOLDER}"', f'"{target}"')

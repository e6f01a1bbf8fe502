"""The dataset card of a packaged release, parsed with huggingface_hub's own card tools."""

from huggingface_hub import DatasetCard

from zoo import labels


def test_card_yaml_parses_with_huggingface_hub(smoke_zoo):
    card = DatasetCard.load(smoke_zoo / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["task_categories"] and str(data["arxiv"]) == "2502.17433"
    assert "arxiv.org/abs/2502.17433" in card.text and "(LICENSE)" in card.text
    assert (smoke_zoo / "LICENSE").is_file()
    info = data["dataset_info"]
    features = {f["name"]: f for f in info["features"]}
    for column, vocab in (("outcome", labels.OUTCOMES), ("mechanism", labels.MECHANISMS)):
        names = features[column]["dtype"]["class_label"]["names"]
        assert sorted(names.values()) == sorted(vocab), (column, names)
    assert data["configs"][0]["data_files"][0]["path"] == "metadata/networks.parquet"
    # what was built is named; the card shows this zoo's own phase diagram
    assert "preset smoke" in card.text
    pictures = [ln for ln in card.text.splitlines() if ln.startswith("![")]
    assert pictures and all((smoke_zoo / ln.split("(")[1].rstrip(")")).is_file() for ln in pictures)

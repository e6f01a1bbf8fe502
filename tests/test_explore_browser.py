"""The explorer page in a real headless browser: Chromium from the system's package manager
(``apt-get install -y chromium``), driven by playwright (which never downloads a browser here). Clicks a cell and
a network and checks that the panels appear, that the cell's ``load_zoo`` call selects exactly the networks
listed, that bad input shows a message (never a blank page) and that no console error is logged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("plotly", reason="zoo explore needs plotly: pip install -e '.[explore]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (pip install "
                               "-e '.[dev]') and Chromium (apt-get install -y chromium)")

from zoo.explore import build_explorer  # noqa: E402

VALIDATION = Path(__file__).resolve().parents[1] / "docs" / "validation" / "networks.parquet"
#: where distributions put Chromium (Debian: chromium; Ubuntu snaps and others: chromium-browser)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.slow


def find_browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@pytest.fixture(scope="module")
def browser():
    exe = find_browser()
    if exe is None:
        pytest.skip(f"no Chromium on this machine (looked for {', '.join(BROWSERS)}): apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def explorers(tmp_path_factory):
    root = tmp_path_factory.mktemp("explorers")
    build_explorer(None, root / "sample", per_cell=1, n_boot=10)
    build_explorer(None, root / "one", lr=0.1, delay=40, per_cell=1, n_boot=0)
    build_explorer(str(VALIDATION), root / "validation", n_boot=0)
    return root


class Page:
    """A page with its console errors collected."""

    def __init__(self, browser, folder: Path):
        self.page = browser.new_page(viewport={"width": 1300, "height": 900})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto((folder / "index.html").as_uri())
        self.page.wait_for_selector("#diagram .main-svg", timeout=20_000)

    def click_cell(self, want_panels: bool = False) -> None:
        """Click the first cell of the first heatmap (with ``want_panels``, one holding a network with panels)."""
        xy = self.page.evaluate("""(wantPanels) => {
            const gd = document.getElementById('diagram'), fl = gd._fullLayout, tr = gd._fullData[0];
            const N = window.zooData.networks, r = gd.getBoundingClientRect();
            for (let i = 0; i < tr.y.length; i++) for (let j = 0; j < tr.x.length; j++) {
              if (tr.z[i][j] === null) continue;
              const [l, x] = tr.customdata[i][j].split('|').map(Number);
              const ok = N.net_id.some((_, k) => N.lr[k] === l && N.x[k] === x && N.panel_file[k] >= 0);
              if (!wantPanels || ok)
                return [r.left + fl.xaxis._offset + fl.xaxis.c2p((tr.x[j] + tr.x[j + 1]) / 2),
                        r.top + fl.yaxis._offset + fl.yaxis.c2p(Math.sqrt(tr.y[i] * tr.y[i + 1]))];
            }
            return null; }""", want_panels)
        assert xy is not None, "no cell to click"
        self.page.mouse.click(*xy)
        self.page.wait_for_selector("#cell-table tr.net", timeout=10_000)


def test_click_a_cell_and_a_network(browser, explorers):
    p = Page(browser, explorers / "sample")
    p.click_cell(want_panels=True)
    rows = p.page.eval_on_selector_all("#cell-table tr.net", "rs => rs.map(r => r.dataset.net)")
    call = p.page.inner_text("#cell-call")
    assert call.startswith("from zoo import load_zoo\nzoo = load_zoo(family=")
    scope: dict = {}
    exec(call, scope)  # the call on the page selects exactly the networks it lists
    assert sorted(scope["zoo"].metadata["net_id"]) == sorted(rows)
    p.page.click("#cell-table tr.net:has(td:text('show'))")
    for panel in ("#net-curves", "#net-outputs", "#net-pcs"):
        p.page.wait_for_selector(f"{panel} .main-svg", timeout=10_000)
    assert "first learned epoch" in p.page.inner_text("#net-curves") or "never learned" in p.page.inner_text("#net-curves")
    assert p.page.is_hidden("#network-message")
    # a network without precomputed panels says so
    others = p.page.query_selector_all("#cell-table tr.net:not(:has(td:text('show')))")
    if others:
        others[0].click()
        assert "No precomputed panels" in p.page.inner_text("#network-message")
    # the filters: the diagram follows, an empty result is a message
    p.page.select_option("#f-lr", index=1)
    p.page.wait_for_timeout(200)
    assert len(p.page.evaluate("document.getElementById('diagram')._fullData[0].z")) == 1
    for box in p.page.query_selector_all("#f-outcome input"):
        box.uncheck()
    assert "No network matches these filters" in p.page.inner_text("#message")
    assert p.errors == []


def test_one_cell_and_metadata_only_pages(browser, explorers):
    p = Page(browser, explorers / "one")
    assert "no exponent" in p.page.inner_text("#scaling-notes")
    p.click_cell()
    assert p.page.inner_text("#cell-title").startswith("Cell: lr 0.1, delay 40 ms")
    assert p.errors == []
    p = Page(browser, explorers / "validation")
    assert "per-network panels unavailable" in p.page.inner_text("#message")
    p.click_cell()
    assert "RELEASE" in p.page.inner_text("#cell-call")
    p.page.click("#cell-table tr.net >> nth=0")
    assert "unavailable" in p.page.inner_text("#network-message")
    assert p.errors == []


def test_a_missing_data_file_is_a_message(browser, explorers, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(explorers / "one", broken)
    (broken / "data.js").unlink()
    page = browser.new_page()
    page.goto((broken / "index.html").as_uri())
    page.wait_for_selector("#message:not([hidden])", timeout=10_000)
    assert "data.js is missing" in page.inner_text("#message")


"""The explorer's screenshots in docs/explore/ (README): the bundled sample with a cell and a network opened, and
the validation zoo (metadata only). Needs the explore extra, playwright and Chromium (README, "Install").

    python benchmarks/explorer_screenshots.py [--out docs/explore]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from zoo.explore import build_explorer

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# the centre of the first heatmap cell holding a network with precomputed panels, in page coordinates
CELL_WITH_PANELS = """() => {
  const gd = document.getElementById('diagram'), fl = gd._fullLayout, tr = gd._fullData[0];
  const N = window.zooData.networks, r = gd.getBoundingClientRect();
  for (let i = 0; i < tr.y.length; i++) for (let j = 0; j < tr.x.length; j++) {
    if (tr.z[i][j] === null) continue;
    const [l, x] = tr.customdata[i][j].split('|').map(Number);
    if (N.net_id.some((_, k) => N.lr[k] === l && N.x[k] === x && N.panel_file[k] >= 0))
      return [r.left + fl.xaxis._offset + fl.xaxis.c2p((tr.x[j] + tr.x[j + 1]) / 2),
              r.top + fl.yaxis._offset + fl.yaxis.c2p(Math.sqrt(tr.y[i] * tr.y[i + 1]))];
  }
  return null; }"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "explore")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        work = Path(tmp)
        build_explorer(None, work / "sample")
        build_explorer(str(ROOT / "docs" / "validation" / "networks.parquet"), work / "validation")
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
                                    args=ARGS)
        for name in ("sample", "validation"):
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto((work / name / "index.html").as_uri())
            page.wait_for_selector("#diagram .main-svg", timeout=30_000)
            if name == "sample":  # open a cell and its first network with panels (the validation zoo has none)
                xy = page.evaluate(CELL_WITH_PANELS)
                page.mouse.click(*xy)
                page.click("#cell-table tr.net:has(td:text('show'))")
                page.wait_for_selector("#net-pcs .main-svg", timeout=30_000)
            else:  # the pooled no-post panel, the one docs/validation fits
                pooled = page.eval_on_selector_all("#f-panel option", "os => os.find(o => o.text.startsWith('no post')).value")
                page.select_option("#f-panel", pooled)
            page.wait_for_timeout(500)
            page.screenshot(path=str(a.out / f"{name}.png"), full_page=True)
            print(a.out / f"{name}.png")
        browser.close()


if __name__ == "__main__":
    main()

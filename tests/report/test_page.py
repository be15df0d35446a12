"""The report page (index.html) of tiny runs with real checkpoints and listening excerpts
of the toy dataset, checked on disk and in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ablation.report import build_report
from ablation.tracks import list_tracks

from .sweep_folders import SDR, TRACKS, write_evaluation, write_run

# Injected into a copy of the page only: records console errors and failed loads, waits
# for every <audio> to load its metadata (or fail), then writes the findings into the DOM.
PROBE = """<script>
var errors = [];
var consoleError = console.error;
console.error = function () { errors.push([].slice.call(arguments).join(" "));
  consoleError.apply(console, arguments); };
addEventListener("error", function (e) {
  errors.push(e.target && e.target.src ? "failed to load " + e.target.src : String(e.message));
}, true);
addEventListener("load", function () {
  var audios = [].slice.call(document.querySelectorAll("audio"));
  Promise.all(audios.map(function (a) { return new Promise(function (done) {
    if (a.readyState >= 1 || a.error) { done(); return; }
    a.addEventListener("loadedmetadata", done); a.addEventListener("error", done); }); }))
  .then(function () {
    var found = {
      errors: errors,
      audio: audios.map(function (a) { return {src: a.getAttribute("src"),
        duration: a.duration, error: a.error && a.error.code}; }),
      images: [].slice.call(document.images).map(function (i) { return {
        src: i.getAttribute("src"), loaded: i.complete && i.naturalWidth > 0,
        natural: i.naturalWidth, shown: i.clientWidth}; }),
      overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
      width: document.documentElement.clientWidth,
      headline: document.querySelectorAll("#headline tbody tr").length };
    var pre = document.createElement("pre"); pre.id = "probe";
    pre.textContent = JSON.stringify(found); document.body.appendChild(pre);
  });
});
</script>"""


@pytest.fixture(scope="module")
def page(toy_root, tmp_path_factory) -> Path:
    """Three runs (two configurations) and the mixture baseline, evaluated on a test set
    whose first track is the toy dataset's: the listening section separates it."""
    root = tmp_path_factory.mktemp("page")
    tracks = [list_tracks(toy_root, "test")[0].name, *TRACKS[1:]]
    folders = [
        write_run(root / "runs" / "demo", n, int(n[8]), int(n[-1]), root=toy_root, tracks=tracks)[0]
        for n in SDR
    ]
    baseline = root / "results" / "baselines" / "mixture-test"
    write_evaluation(baseline, np.full((len(tracks), 2), -5.0), "mixture", toy_root, tracks)
    report = build_report([*folders, baseline], root / "results" / "demo", "demo", wandb_log=False)
    return report.parent / "index.html"


def test_page_links_only_files_beside_it(page):
    html = page.read_text()
    links = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert links and not [link for link in links if "://" in link or link.startswith("/")]
    for link in links:
        assert (page.parent / link).is_file(), link
    audio = [link for link in links if link.endswith(".flac")]
    # one track: the mixture, then references and two configurations for two targets
    assert len(audio) == 1 + 3 * 2, audio
    info = sf.info(page.parent / audio[0])
    assert info.subtype == "PCM_16" and info.duration == pytest.approx(3.0, abs=0.01)
    assert "1d depth2 (1d-depth2-seed0)" in html  # the seed heard is named


def test_page_in_headless_chromium(page):
    """No console error, every audio has a positive duration, every image loads, and the
    headline table has one row per configuration plus the baseline."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed: `make chromium` installs it (root, apt)")
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("<head>", f"<head>{PROBE}", 1))
    command = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--mute-audio"]
    command += ["--window-size=1280,2400", "--hide-scrollbars"]
    command += ["--virtual-time-budget=20000", "--dump-dom", probe.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe never reported: {dom[-2000:]}"
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    assert len(result["audio"]) == 7
    assert all(a["error"] is None and a["duration"] > 0 for a in result["audio"]), result["audio"]
    assert result["images"] and all(i["loaded"] for i in result["images"]), result["images"]
    assert result["headline"] == 2 + 1
    # nothing overflows a 1280 px window; no image is scaled up beyond its pixels
    assert result["width"] == 1280 and result["overflow"] == 0, result["overflow"]
    small = [i for i in result["images"] if i["natural"] < i["shown"]]
    assert not small, small


def test_page_reads_at_a_glance(page):
    """The headline sentence first, one significance table, each plot linked to its full
    size, each player with its SDR, steps never marked as a merit."""
    html = page.read_text()
    headline = re.search(r"<p class=headline>(.*?)</p>", html).group(1)
    assert headline.startswith("Best: 1d depth3, mean test SDR ")
    assert "above the runner-up 1d depth2" in headline and "Wilcoxon p = " in headline
    assert html.index("class=headline") < html.index('id="results"')
    significance = html[html.index('<section id="significance">') :]
    significance = significance[: significance.index("</section>")]
    assert significance.count("<table") == 1
    for column in ("a - b (dB)", "95 % interval", "p (BH)", "winner"):
        assert f"<th>{column}</th>" in significance, column
    for plot in ("val_loss", "sdr_boxplot", "sdr_vs_depth", "sdr_vs_compute"):
        assert f'<a href="{plot}.png"><img src="{plot}.png"' in html, plot
    scores = re.findall(r"<div class=sdr>SDR (-?[0-9.]+) dB", html)
    assert len(scores) == 2 * 2  # two configurations, two targets
    assert float(scores[0]) == pytest.approx(SDR["1d-depth2-seed0"][0, 0], abs=0.005)
    table = re.search(r'<table id="headline">(.*?)</table>', html, re.S).group(1)
    steps = re.findall(r"<th>(.*?)</th>", table).index("steps")
    row = re.search(r"<tbody><tr>(.*?)</tr>", table).group(1)
    assert 'class="best"' not in re.findall(r"<td[^>]*>", row)[steps]

"""The UI in a real browser: Debian's chromium driven by Playwright against `dagster dev` on
a free loopback port, with a copy of the embedded data. Screenshots of every step go to a
folder the test prints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from brain_pipeline.core.model.sweep import load_sweep
from brain_pipeline_tests.conftest import ASSETS
from brain_pipeline_tests.service.conftest import BIN, REPO, stop
from brain_pipeline_tests.service.servers import free_port

SWEEP = load_sweep()  # the repository's sweep.toml, as the definitions under test read it

pytestmark = pytest.mark.services

# The embedded data's datasets (data/datasets.toml), not the tiny test data's.
SOURCES = ["synth_alzheimer", "synth_navoneel", "synth_preetviradiya"]


@pytest.fixture
def dagster_dev(tmp_path: Path):
    """`dagster dev` (webserver and daemon) on the embedded data's copy; yields (url, env)."""
    data = tmp_path / "data"
    shutil.copytree(REPO / "data", data)
    (tmp_path / "home").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRAIN_PIPELINE_")},
        "DAGSTER_HOME": str(tmp_path / "home"),
        "BRAIN_PIPELINE_DATA_DIR": str(data),
        "BRAIN_PIPELINE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    port = free_port()
    log = open(tmp_path / "dagster_dev.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", str(REPO / "workspace.yaml")]
        + ["-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", env, data
    finally:
        stop(server)
        log.close()


def _instance(env: dict) -> dg.DagsterInstance:
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))


def _wait(condition, timeout: float, what: str, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout} s")


class Screens:
    """The page, with the first-visit community dialog dismissed whenever it shows."""

    def __init__(self, page, folder: Path) -> None:
        self.page, self.folder, self.count = page, folder, 0
        self.community = page.get_by_role("dialog").filter(has_text="Join the Dagster community")

    def open(self, url: str, ready) -> None:
        self.page.goto(url)
        _wait(lambda: self._dismiss() or ready().count() > 0, 120, url, every=0.5)
        self._dismiss()

    def _dismiss(self) -> bool:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        if self.community.count() and self.community.is_visible():
            try:
                self.community.get_by_role("button", name="Skip").click(timeout=5_000)
            except PlaywrightTimeout:  # another overlay lies over it: close that first
                self.page.keyboard.press("Escape")
        return False

    def click(self, locator, attempts: int = 6) -> None:
        """Click, dismissing the community dialog first: it can open at any moment, over
        whatever the test is about to click."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for attempt in range(attempts):
            self._dismiss()
            try:
                locator.click(timeout=5_000)
                return
            except PlaywrightTimeout:
                if attempt == attempts - 1:
                    raise

    def shot(self, name: str) -> None:
        self._dismiss()
        self.count += 1
        self.page.screenshot(path=str(self.folder / f"{self.count}_{name}.png"))


def test_the_ui_in_a_browser(chromium: Path, dagster_dev, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, env, data = dagster_dev
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    started = time.monotonic()
    _wait(lambda: _answers(base), 180, "dagster dev")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        screens = Screens(page, shots)
        try:
            _graph_shows_every_asset(screens, base)
            _materialize_all_completes(screens, base, env)
            _asset_shows_markdown(
                screens,
                base,
                "model_evaluation",
                "confusion_matrix",
                'img[alt="confusion_matrix.png"]',
            )
            _asset_shows_markdown(
                screens, base, "leaderboard", "pareto_front", 'img[alt="pareto_front.png"]'
            )
            _asset_shows_markdown(
                screens, base, "model_card", "model_card", 'h2:has-text("Intended use")'
            )
            _the_sensor_runs_the_pipeline_on_a_new_image(screens, base, env, data)
        finally:
            try:
                screens.shot("last")
            except Exception as exc:  # never hide the failure that brought us here
                print(f"no last screenshot: {exc}")
            browser.close()
    print(f"browser test: {time.monotonic() - started:.0f} s")


def _answers(base: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/server_info", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _graph_shows_every_asset(screens: Screens, base: str) -> None:
    """Every asset appears in the graph of its group (data: sources to splits; model: the
    model and what judges it)."""
    page = screens.page
    seen: dict[str, int] = {}
    for group, landmark in (("data", "dataset_splits"), ("model", "champion_model")):
        screens.open(
            f"{base}/locations/brain_pipeline/asset-groups/{group}",
            lambda landmark=landmark: page.get_by_text(landmark, exact=True),
        )
        for name in [*ASSETS, *SOURCES]:
            seen[name] = seen.get(name, 0) + page.get_by_text(name, exact=True).count()
        screens.shot(f"asset_graph_{group}")
    assert [name for name, count in seen.items() if count == 0] == []


def _materialize_all_completes(screens: Screens, base: str, env: dict) -> None:
    """*Materialize all* asks for the training configuration (the partition): choose the
    sweep's default, launch one run, and wait for it."""
    page = screens.page
    count = len(ASSETS) + len(SOURCES)  # the assets and one manifest per dataset
    button = page.get_by_role("button", name=re.compile(rf"Materialize all \({count}\)"))
    screens.open(f"{base}/locations/brain_pipeline/jobs/full_pipeline", lambda: button)
    screens.click(button)
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    dialog.get_by_text("0 partitions", exact=True).wait_for(timeout=60_000)
    options = page.get_by_role("menuitem")
    for _ in range(3):  # a re-render as the partitions' status loads can close the menu
        screens.click(dialog.get_by_text("Select a partition or create one"))
        page.wait_for_timeout(1500)  # the menu's fade-in
        if options.count():
            break
    assert {text.split("\n")[0] for text in options.all_inner_texts()} >= set(SWEEP.names)
    screens.click(options.get_by_text(SWEEP.default, exact=True).first)
    page.keyboard.press("Escape")  # closes the menu, not the dialog
    options.first.wait_for(state="detached", timeout=10_000)
    assert dialog.get_by_text("1 partition", exact=True).count() == 1
    screens.shot("partition_chosen")
    screens.click(dialog.get_by_role("button", name="Launch 1 run"))
    page.get_by_text("Launched run").wait_for(timeout=60_000)
    screens.shot("launched")
    instance = _instance(env)
    (run,) = _wait(lambda: instance.get_runs() or None, 60, "the launched run")
    assert run.tags["dagster/partition"] == SWEEP.default
    finished = _wait(
        lambda: (r := instance.get_run_by_id(run.run_id)).is_finished and r, 1200, "the run"
    )
    screens.open(f"{base}/runs/{run.run_id}", lambda: page.get_by_text("Success", exact=True))
    screens.shot("run_finished")
    assert finished.is_success, finished.status


def _asset_shows_markdown(screens: Screens, base: str, asset: str, key: str, shows: str) -> None:
    """Open the asset's page, show its `key` metadata (Markdown) and wait for `shows`, a CSS
    selector inside it; an image must have loaded."""
    page = screens.page
    keys = page.get_by_placeholder("Filter metadata keys")
    screens.open(f"{base}/assets/{asset}", lambda: keys)
    keys.fill(key)
    page.get_by_role("row").filter(has_text=key).get_by_text("[Show Markdown]").first.click()
    shown = page.locator(shows).first
    shown.wait_for(timeout=30_000)
    if shows.startswith("img"):
        assert shown.evaluate("img => img.complete && img.naturalWidth > 100")
    page.wait_for_timeout(1000)  # the dialog's fade-in, for the screenshot
    screens.shot(key)
    page.keyboard.press("Escape")


def _the_sensor_runs_the_pipeline_on_a_new_image(screens, base, env, data: Path) -> None:
    page = screens.page
    toggle = page.get_by_role("checkbox")
    screens.open(f"{base}/locations/brain_pipeline/sensors/raw_data_changed", lambda: toggle)
    # The switch is a styled checkbox drawn off-screen: click it as the page's own label does.
    toggle.first.evaluate("input => input.click()")
    _wait(lambda: toggle.first.is_checked(), 30, "the sensor switched on", every=0.5)
    screens.shot("sensor_on")
    image = next((data / "synth_navoneel" / "yes").iterdir())
    shutil.copy(image, image.with_name("added_by_the_browser_test.jpg"))
    instance = _instance(env)
    sensor_run = _wait(
        lambda: next(
            (
                r
                for r in instance.get_runs()
                if r.tags.get("dagster/sensor_name") == "raw_data_changed"
            ),
            None,
        ),
        240,
        "a run requested by raw_data_changed",
    )
    screens.open(f"{base}/runs/{sensor_run.run_id}", lambda: page.get_by_text("raw_data_changed"))
    screens.shot("sensor_run")

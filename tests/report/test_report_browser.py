"""The report in a real browser: headless Chromium (Debian package `chromium`; CI installs it)
opens it, every figure renders, nothing is logged as an error, and no injected script runs.

Chromium is driven through its DevTools protocol over a pipe (`--remote-debugging-pipe`: JSON
messages ending in NUL on file descriptors 3 and 4), which needs no websocket client and tells
console errors from warnings — the software-WebGL fallback warns, and that is not our error.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import time
from pathlib import Path

import pytest

from autostage.cli import main
from autostage.host import plugin_manager
from autostage.report import write_report

pytestmark = pytest.mark.slow  # a headless browser (and, for one test, a Ray search)

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(apt-get install -y chromium)")
RENDERED = """[...document.querySelectorAll('.plotly-graph-div')]
               .filter(div => div.querySelector('svg.main-svg')).length"""
FIGURES = "document.querySelectorAll('.plotly-graph-div').length"


class Browser:
    """One headless Chromium, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path) -> None:
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()
        # above the fds a child may expect, so the dup2s onto 3 and 4 never collide
        inp = fcntl.fcntl(to_chrome, fcntl.F_DUPFD_CLOEXEC, 10)
        out = fcntl.fcntl(from_chrome, fcntl.F_DUPFD_CLOEXEC, 10)
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--enable-unsafe-swiftshader", f"--user-data-dir={profile}",
                "--remote-debugging-pipe", "about:blank"]
        self.pid = os.posix_spawn(CHROMIUM, argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, inp, 3), (os.POSIX_SPAWN_DUP2, out, 4),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        for fd in (to_chrome, from_chrome, inp, out):
            os.close(fd)
        self.buffer, self.last_id, self.events = b"", 0, []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", page=True)

    def send(self, method: str, page: bool = False, timeout: float = 30, **params) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if page:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise EOFError("chromium exited")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", page=True, expression=expression,
                         returnByValue=True)["result"].get("value")

    def open(self, path: Path, expect_figures: int, timeout: float = 30) -> int:
        """Load the page; wait until `expect_figures` figures have drawn (or time is up).
        Returns how many drew."""
        self.send("Emulation.setDeviceMetricsOverride", page=True, width=1400, height=1000,
                  deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", page=True, url=path.resolve().as_uri())
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._next(deadline))
        rendered = self.evaluate(RENDERED)
        while rendered < expect_figures and time.monotonic() < deadline:
            time.sleep(0.2)
            rendered = self.evaluate(RENDERED)
        return rendered

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser-logged errors, as text."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", "")))
                                    for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append(details.get("exception", {}).get("description", details["text"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(params["entry"]["text"])
        return out

    def screenshot(self, path: Path) -> None:
        height = self.evaluate("document.documentElement.scrollHeight")
        self.send("Emulation.setDeviceMetricsOverride", page=True, width=1400, height=height,
                  deviceScaleFactor=1, mobile=False)
        time.sleep(0.5)  # responsive figures redraw for the new viewport
        shot = self.send("Page.captureScreenshot", page=True, format="png",
                         captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, TimeoutError, EOFError, RuntimeError):
            os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self._read)
        os.close(self._write)


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


def declared_figures(page: Path) -> int:
    import re

    text = page.read_text()
    return int(re.search(r"name='autostage-figures' content='(\d+)'", text).group(1))


@needs_chromium
def test_the_browser_check_sees_errors_and_figures_that_did_not_draw(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><div class='plotly-graph-div'></div>"
                    "<script>console.error('drawn wrong')</script>"
                    "<script>undefinedFunction()</script></body></html>")
    assert browser.open(page, expect_figures=1, timeout=1) == 0
    errors = browser.errors()
    assert "drawn wrong" in errors
    assert any("undefinedFunction is not defined" in e for e in errors)


@needs_chromium
def test_a_report_with_hostile_names_renders_every_figure_and_runs_no_injected_script(
        browser, tmp_path):
    from support.report_runs import GoodPlugin, evil_run

    run = evil_run(tmp_path / "run")
    page = write_report(run, host=plugin_manager(entry_points=False, plugins=[GoodPlugin()]))
    expected = declared_figures(page)
    assert expected == 10
    assert browser.open(page, expected) == expected == browser.evaluate(FIGURES)
    assert browser.errors() == []
    assert browser.evaluate("document.body.dataset.pwned === undefined")
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    title = browser.evaluate("document.querySelector('h1').textContent")
    assert title == "Study <script>alert(1)</script>"
    labels = browser.evaluate("[...document.querySelectorAll('svg text')].map(t => t.textContent)")
    assert '▶ <img src=x onerror="document.body.dataset.pwned = 1">' in labels  # shown as text
    assert 'eval.<img src=x onerror="document.body.dataset.pwned = 1">.accuracy' in labels
    browser.screenshot(tmp_path / "hostile.png")


def in_section(title: str, js: str) -> str:
    """`js` run with `fig`: the figure under the heading `title`."""
    return (f"(() => {{ const fig = [...document.querySelectorAll('section')].find(s => "
            f"s.querySelector('h2').textContent === {json.dumps(title)})"
            f".querySelector('.plotly-graph-div'); return {js}; }})()")


def click(selector: str, text: str | None = None) -> str:
    """Click what Plotly's menus listen on (`text`: the one showing it)."""
    match = f".find(e => e.textContent === {json.dumps(text)})" if text else "[0]"
    return (f"[...fig.querySelectorAll({json.dumps(selector)})]{match}"
            ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")


@needs_chromium
def test_recorded_metrics_and_the_pareto_front_render_and_the_menu_switches_metric(
        browser, tmp_path):
    from support.report_runs import ACCURACY, METRIC, gradient_records, write_run

    run = write_run(tmp_path / "run", gradient_records(), metric=[METRIC, ACCURACY],
                    mode=["min", "max"], optuna_db=False)
    page = write_report(run, host=plugin_manager(entry_points=False))
    expected = declared_figures(page)
    assert browser.open(page, expected) == expected
    points = in_section("Pareto front", "fig.querySelectorAll('.point').length")
    assert browser.evaluate(points) == 2  # both trials are on the front
    metrics = "Recorded metrics"
    assert browser.evaluate(in_section(metrics, "fig.querySelector('.ytitle').textContent")) == (
        "train.grad_norm")
    assert browser.evaluate(in_section(metrics, "fig.layout.yaxis.type")) == "log"
    browser.evaluate(in_section(metrics, click(".updatemenu-header")))
    browser.evaluate(in_section(metrics, click(".updatemenu-dropdown-button", "train.loss")))
    deadline = time.monotonic() + 10
    while browser.evaluate(in_section(metrics, "fig.layout.yaxis.type")) != "linear":
        assert time.monotonic() < deadline, "the menu did not switch the metric"
        time.sleep(0.2)
    assert browser.evaluate(in_section(metrics, "fig.querySelector('.ytitle').textContent")) == (
        "train.loss")
    assert browser.evaluate(in_section(metrics, "fig.data.find(t => t.name === 'best: trial 1')"
                                                ".y.slice(0, 3)")) == [4.0, 3.7, 1.3]
    assert browser.errors() == []
    browser.screenshot(tmp_path / "metrics.png")


@needs_chromium
def test_the_report_of_a_real_search_renders_and_is_saved_as_a_screenshot(
        ray_session, browser, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["search", "studies/quickstart-toy.toml", "--out", str(run),
                 "--set", "study.trials=12"])
    assert code == 0
    assert f"report: {run / 'report.html'}" in capsys.readouterr().out
    page = run / "report.html"
    expected = declared_figures(page)
    assert expected == 9  # 12 trials are enough for every built-in figure
    assert browser.open(page, expected) == expected
    assert browser.errors() == []
    shot = tmp_path / "report.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(shot, "/tmp/report-screenshot.png")  # for a person to look at

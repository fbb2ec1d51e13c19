"""`opsbot demo --web` in a real headless browser: the incident from alert to postmortem, driven by
clicks and typing in the page, as a person would in Slack.

The demo runs as its own process (`python -m bot demo --web --port 0`), exactly as a user starts
it; Chromium (Debian's, driven by Playwright) opens the page. The test waits for the RCA in the
thread, clicks Approve as @alice (an approver under the demo's policy), waits for the bot to
verify the step and post the postmortem, types `/ops status` and sees the answer only alice sees,
then stops the demo with SIGINT and checks that it left no process or temporary directory behind.
Screenshots go to a folder under the test's tmp dir (printed). Without a browser the test is
skipped, and fails under CI=true.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bot.sandbox.paths import REPO_ROOT

CHROMIUM_NAMES = ("chromium", "chromium-browser")
START_SECONDS = 60
STEP_MS = 60_000
STOP_SECONDS = 30
URL_LINE = re.compile(r"The demo is at (http://127\.0\.0\.1:\d+/)")
STATE_LINE = re.compile(r"\(state in (\S+)\)")


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (under CI=true a missing browser fails the run; scripts/setup installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    path = next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)
    if path is None:
        _missing("no chromium on PATH (apt-get install chromium)")
    return path


def _children(pid: int) -> set[int]:
    """Direct child processes of `pid` (Prometheus, Alertmanager), from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = task / "children"
        if children.exists():
            found |= {int(c) for c in children.read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


class DemoProcess:
    """`opsbot demo --web` as a child process; its output is read on a thread into `lines`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "demo", "--web", "--port", "0"], cwd=REPO_ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], seconds: float) -> re.Match[str]:
        import time

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if match := pattern.search(line):
                return match
        raise AssertionError(f"the demo never printed {pattern.pattern!r}:\n{''.join(self.output)}")

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(STOP_SECONDS)
        self._reader.join(5)
        return code


def test_web_demo_from_alert_to_postmortem_in_a_browser(chromium, tmp_path, prometheus_binary, alertmanager_binary):
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    demo = DemoProcess()
    try:
        workdir = Path(demo.wait_for(STATE_LINE, START_SECONDS).group(1))
        url = demo.wait_for(URL_LINE, START_SECONDS).group(1)
        children = _children(demo.proc.pid)
        assert len(children) >= 2, "Prometheus and Alertmanager run as child processes"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            expect(page.locator("#viewer")).to_have_value("U0ALICE")
            channel, thread = page.locator("#channel-feed"), page.locator("#thread-feed")

            # the card in the channel, the RCA, the proposal, the graph and the evidence in the thread
            expect(channel.get_by_text("INC-1 · KubePodCrashLooping")).to_be_visible(timeout=STEP_MS)
            expect(thread.get_by_text("Root cause analysis")).to_be_visible(timeout=STEP_MS)
            approve = thread.locator("button[data-action=step_approve]")
            expect(approve).to_be_visible(timeout=STEP_MS)
            graph = thread.locator("figure.file-image img").first
            expect(graph).to_be_visible(timeout=STEP_MS)
            # visible is not loaded: wait for the image's load (or error) event, then read its width
            width = graph.evaluate("""img => img.complete ? img.naturalWidth : new Promise(done => {
                img.addEventListener('load', () => done(img.naturalWidth), {once: true});
                img.addEventListener('error', () => done(0), {once: true}); })""")
            assert width > 100, "the uploaded graph shows"
            graph_src = graph.get_attribute("src")
            fetched = page.request.get(url.rstrip("/") + graph_src)
            assert fetched.ok and fetched.body().startswith(b"\x89PNG")
            assert fetched.headers["content-type"] == "image/png"
            page.screenshot(path=str(shots / "01-rca.png"))

            # Approve as alice: the bot's policy takes it; only alice is told
            approve.click()
            expect(channel.locator(".ephemeral", has_text="Approved")).to_be_visible(timeout=STEP_MS)
            page.screenshot(path=str(shots / "02-approved.png"))
            expect(thread.get_by_text("succeeded and verified").first).to_be_visible(timeout=STEP_MS)
            page.screenshot(path=str(shots / "03-verified.png"))
            expect(thread.get_by_text("Postmortem of INC-1").first).to_be_visible(timeout=STEP_MS)
            expect(channel.get_by_text("Resolved").first).to_be_visible(timeout=STEP_MS)
            markdown = thread.locator("a.file-card", has_text="Postmortem of INC-1")
            expect(markdown).to_be_visible(timeout=STEP_MS)
            download = page.request.get(url.rstrip("/") + markdown.get_attribute("href"))
            assert download.ok and download.headers["content-disposition"].startswith("attachment")
            assert download.text().startswith("# Postmortem") or "INC-1" in download.text()[:200]
            page.screenshot(path=str(shots / "04-postmortem.png"), full_page=True)

            # /ops status from the composer: the answer is alice's alone
            page.locator("#channel-composer input[name=text]").fill("/ops status")
            page.locator("#channel-composer input[name=text]").press("Enter")
            answer = channel.locator(".ephemeral", has_text="No open incidents")
            expect(answer).to_be_visible(timeout=STEP_MS)
            expect(answer.get_by_text("Only visible to you")).to_be_visible()
            page.screenshot(path=str(shots / "05-ops-status.png"))
            page.select_option("#viewer", "U0BOB")
            expect(channel.locator(".ephemeral")).to_have_count(0)
            expect(channel.get_by_text("INC-1 · KubePodCrashLooping")).to_be_visible()
            page.screenshot(path=str(shots / "06-as-bob.png"))

            # another scenario into the same workspace: its alerts open a new incident card
            page.select_option("#scenario", "storefront-rollout-image-not-found")
            page.locator("#fire").click()
            expect(channel.get_by_text(re.compile(r"INC-2 · KubeDeployment"))).to_be_visible(timeout=STEP_MS)
            expect(page.locator("#notices")).to_contain_text("storefront-rollout-image-not-found")
            page.screenshot(path=str(shots / "07-another-scenario.png"))
            assert errors == [], errors
            browser.close()
    finally:
        code = demo.interrupt() if demo.proc.poll() is None else demo.proc.returncode
    assert code == 0, "".join(demo.output)
    assert "opsbot demo: stopped" in "".join(demo.output)
    assert not workdir.exists(), "the temporary directory is removed"
    assert not [pid for pid in children if _alive(pid)], "Prometheus and Alertmanager were stopped"
    assert sorted(p.name for p in shots.iterdir()) == [f"0{n}-{name}.png" for n, name in enumerate(
        ("rca", "approved", "verified", "postmortem", "ops-status", "as-bob", "another-scenario"), start=1)]

"""The smoke run's report as a person sees it: opened from disk in headless Chromium (Debian's `chromium`),
every image loads, nothing is logged as an error, and every number the page shows from summary.csv
equals the file. Chromium is driven over its DevTools pipe (fds 3 and 4), so no driver is needed.

Skipped, saying why, where chromium is not installed (`apt-get install -y chromium`; .ci/run does it)."""

import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from imm.cli import main
from imm.layout import RunLayout
from imm.report.summary import read_summary

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--remote-debugging-pipe")
PAGE_STATE = """JSON.stringify({
  images: [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0})),
  cells: [...document.querySelectorAll('td[data-key]')].map(c => [c.dataset.key, c.textContent]),
})"""


class DevTools:
    """The few DevTools protocol calls the test needs, over --remote-debugging-pipe (JSON messages, NUL-ended)."""

    def __init__(self, binary: str, profile: str):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds():  # chromium reads commands on fd 3 and writes replies on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]  # never 3 or 4 already
            os.dup2(high[0], 3)  # dup2 makes the copies inheritable
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"], close_fds=False,
                                     preexec_fn=wire_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r), os.close(from_chrome_w)
        self.messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_chrome, 1 << 16):
            buffer += chunk
            *whole, buffer = buffer.split(b"\0")
            for raw in whole:
                self.messages.put(json.loads(raw))

    def call(self, method: str, session: str | None = None, timeout: float = 60, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        return self.wait(lambda m: m.get("id") == self._next, timeout)

    def wait(self, match, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if match(message):
                if "error" in message:
                    raise RuntimeError(f"DevTools error: {message['error']}")
                return message.get("result", message)
            self.events.append(message)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_chrome)


def open_page(path: Path) -> tuple[dict, list[str]]:
    """Load `path` in a fresh headless Chromium; (the page's images and keyed cells, every error it logged)."""
    with tempfile.TemporaryDirectory() as profile:
        tools = DevTools(CHROMIUM, profile)
        try:
            target = tools.call("Target.createTarget", url="about:blank")["targetId"]
            session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                tools.call(f"{domain}.enable", session)
            tools.call("Page.navigate", session, url=path.resolve().as_uri())
            tools.wait(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session)
            state = tools.call("Runtime.evaluate", session, expression=PAGE_STATE, returnByValue=True)
            time.sleep(0.5)  # late console messages
            while not tools.messages.empty():
                tools.events.append(tools.messages.get())
        finally:
            tools.close()
    return json.loads(state["result"]["value"]), errors(tools.events)


def errors(events: list[dict]) -> list[str]:
    found = []
    for e in events:
        params = e.get("params", {})
        if e.get("method") == "Runtime.exceptionThrown":
            found.append(params["exceptionDetails"].get("text", "exception"))
        elif e.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
        elif e.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(params["entry"]["text"])
    return found


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "--config", "smoke", f"out_dir={out}", "model.threads=1"]) == 0
    return out / "smoke"


@pytest.mark.slow  # the smoke run trains models
def test_every_run_ends_with_a_report_and_a_training_log(smoke_run):
    layout = RunLayout(smoke_run)
    assert (layout.report / "index.html").is_file()
    log = [json.loads(line) for line in layout.training_log("self_improve", 1).read_text().splitlines()]
    stats = json.loads(layout.finetune_stats("self_improve", 1).read_text())
    assert [r["step"] for r in log] == list(range(1, stats["steps"] + 1))
    assert all(r["loss"] > 0 and r["lr"] > 0 and r["tokens_per_s"] > 0 for r in log)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium); "
                                             "the report is checked in a browser only where it is")
def test_the_report_opens_in_chromium_with_every_image_and_the_numbers_of_summary_csv(smoke_run):
    state, logged = open_page(RunLayout(smoke_run).report / "index.html")
    assert logged == []
    assert len(state["images"]) >= 5 and all(i["ok"] for i in state["images"]), state["images"]
    values = {"|".join((r.arm, str(r.iteration), r.model, r.task, r.metric)): r.value
              for r in read_summary(RunLayout(smoke_run).summary)}
    checked = 0
    for key, text in state["cells"]:
        metric = key.rsplit("|", 1)[1]
        scale, digits = (100.0, 1) if metric.endswith("match") or metric.startswith("pass@") else \
            (1.0, 2) if metric == "unique-answers" else (1.0, 4) if metric == "entropy" else (1.0, 3)
        if text == "-":
            assert key not in values, key
            continue
        assert text == f"{scale * values[key]:.{digits}f}", key
        checked += 1
    # θ0 and two iterations of two arms: 6 accuracies and 5 collapse figures each (pass@K, unique answers,
    # distinct-2, self-BLEU, entropy; EAD is the report's own, over one vocabulary, not a summary.csv figure)
    assert checked >= 5 * (6 + 5)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_a_broken_image_is_caught(tmp_path):
    """The check itself can fail: a page whose image is missing logs an error and reports it not loaded."""
    page = tmp_path / "index.html"
    page.write_text('<!doctype html><html><body><img src="missing.png"></body></html>')
    state, logged = open_page(page)
    assert state["images"] == [{"src": "missing.png", "ok": False}]
    assert logged, "a missing image must log an error"

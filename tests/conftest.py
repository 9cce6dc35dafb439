"""Shared fixtures. The fast unit layer (tests/unit) runs first."""

import core  # noqa: F401  (first: Keras 2 before TensorFlow loads)

# isort: split
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ML_100K = os.path.join(REPO, "..", "shared", "data", "ml-100k")
# The fast layers: unit tests and the hostile-input cases (tests/hostile).
FAST = (os.path.join(REPO, "tests", "unit"), os.path.join(REPO, "tests", "hostile"))


def pytest_collection_modifyitems(items):
    """The fast layers first: a broken contract shows in seconds, before any pipeline runs."""
    items.sort(key=lambda item: not str(item.fspath).startswith(FAST))


class Cli:
    """The installed `movielens-tfx` command, run in a subprocess."""

    path = os.path.join(os.path.dirname(sys.executable), "movielens-tfx")

    def __call__(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([self.path, *args], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


def file_tree(path):
    """Every file under `path` with its size and modification time (to check that nothing there changed)."""
    out = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            out[os.path.relpath(full, path)] = (os.path.getsize(full), os.path.getmtime(full))
    return out


@pytest.fixture(scope="session")
def tree():
    """conftest.file_tree, for tests."""
    return file_tree


@pytest.fixture(scope="session")
def ml100k_path():
    if not os.path.exists(os.path.join(ML_100K, "u.data")):
        pytest.skip("the real ml-100k files are not at ../shared/data/ml-100k")
    return ML_100K


# --- headless Chromium (Debian's `chromium`; .ci/run installs it) ----------

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1000",
)


class Chromium:
    """Loads a page in headless Chromium over the DevTools protocol (--remote-debugging-pipe).

    `load(url, screenshot)` returns {"errors": [...], "result": <value of `check`>}:
    console errors (console.error / assert), uncaught exceptions and failed
    loads (Log entries of level error) seen while the page loaded, and a
    full-page PNG screenshot written to `screenshot`.
    """

    def __init__(self, binary):
        self.binary = binary

    def load(self, url, screenshot, check="null", settle=1.5, timeout=60):
        import base64
        import json
        import shutil
        import tempfile
        import time

        profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def fds():
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        process = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        buffer, events, ids = b"", [], iter(range(1, 10**6))
        deadline = time.time() + timeout

        def read_message():
            nonlocal buffer
            while b"\0" not in buffer:
                if time.time() > deadline:
                    raise TimeoutError("Chromium did not answer in time")
                chunk = os.read(from_browser_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                buffer += chunk
            message, buffer = buffer.split(b"\0", 1)
            return json.loads(message)

        def send(method, session=None, **params):
            message_id = next(ids)
            message = {"id": message_id, "method": method, "params": params}
            if session:
                message["sessionId"] = session
            os.write(to_browser_w, json.dumps(message).encode() + b"\0")
            while True:
                message = read_message()
                if message.get("id") == message_id:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message["result"]
                events.append(message)

        def wait_for(method):
            for event in events:
                if event.get("method") == method:
                    return
            while True:
                event = read_message()
                events.append(event)
                if event.get("method") == method:
                    return

        try:
            [page] = [t for t in send("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            session = send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                send(f"{domain}.enable", session)
            send("Page.navigate", session, url=url)
            wait_for("Page.loadEventFired")
            time.sleep(settle)  # late errors (timers, iframes)
            value = send("Runtime.evaluate", session, expression=check, returnByValue=True)["result"].get("value")
            size = send("Page.getLayoutMetrics", session)["cssContentSize"]
            shot = send("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            send("Runtime.evaluate", session, expression="0")  # collect the last events
            errors = []
            for event in events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                    errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
                elif method == "Runtime.exceptionThrown":
                    details = params["exceptionDetails"]
                    errors.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
                elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                    errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
            return {"errors": errors, "result": value}
        finally:
            try:
                send("Browser.close")
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            os.close(to_browser_w)
            os.close(from_browser_r)
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return Chromium(binary)

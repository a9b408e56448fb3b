"""Headless Chromium for tests that need a real browser (pages, forms, downloads, screenshots).

Debian's `chromium` and `chromium-driver` packages (installed by `scripts/browser.sh`, which
scripts/test.sh runs) driven by Selenium through an explicit
`Service("/usr/bin/chromedriver")`: Selenium Manager, which would download drivers and browsers,
is never run.

  headless_chromium(download_dir)        context manager yielding a selenium WebDriver
  wait_for_download(download_dir, name)  path of a finished download
  save_screenshot(driver, name)          PNG in artifacts_dir()
  chromium (pytest fixture)              Browser(driver, downloads), see below

The browser gets a fresh profile, HOME and cache in a temp dir that is removed afterwards; a
1280x900 page; downloads go to `download_dir` without a prompt. It cannot reach the network:
background services are off, the Google endpoints Chromium still calls point at a closed port
on 127.0.0.1, host names other than localhost resolve to nothing, and every request not to
loopback goes to a refusing proxy on 127.0.0.1 that records it. The `chromium` fixture fails a
test whose page asked for anything beyond loopback.

Screenshots go to `$D2O_TEST_ARTIFACTS`, else `<repo>/test-artifacts/` (git-ignored).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, NamedTuple, Optional

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# The browser executable itself, not the /usr/bin/chromium launcher: the launcher sources
# /etc/chromium.d/*, which exports Google API keys, enables remote extensions, loads the
# system's extensions and adds flags of its own. Tests want exactly the flags below.
CHROMIUM = Path("/usr/lib/chromium/chromium")
WINDOW = (1280, 900)
PAGE_LOAD_TIMEOUT_S = 15

# Selenium Manager only runs when no driver path is given; if that ever changes it must not
# download anything nor send usage statistics.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

# Flags that stop Chromium's own traffic (updates, sync, metrics, safe browsing, ...) and keep
# the run reproducible. `--proxy-server` and `--host-resolver-rules` are added per browser.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # tests run as root, and Chromium will not run its sandbox as root
    "--disable-dev-shm-usage",
    "--disable-gpu",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
    "--lang=en-US",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-translate",
    "--metrics-recording-only",  # metrics stay in the profile, never uploaded
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--safebrowsing-disable-auto-update",
    "--password-store=basic",  # no keyring over D-Bus
    "--disable-quic",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    # NetworkTimeServiceQuerying: clients2.google.com/time; the rest as their names say.
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater,"
    "NetworkTimeServiceQuerying,PreconnectToSearch,SearchEnginePreconnect2",
    # Chromium 156 still asks these with all the flags above (seen at the refusing proxy):
    # accounts.google.com/ListAccounts and an on-demand component install (the Optimization
    # Guide model manifest) from update.googleapis.com. Their endpoints go to a closed port
    # on loopback instead.
    "--gaia-url=http://127.0.0.1:9/",
    "--google-apis-url=http://127.0.0.1:9/",
    "--component-updater=url-source=http://127.0.0.1:9/",
]

# Profile preferences (chromedriver writes them before the browser starts). Debian's
# /etc/chromium/master_preferences sets most of these too, but a driven browser skips it.
CHROMIUM_PREFS = {
    "download.prompt_for_download": False,
    "download.directory_upgrade": True,
    "safebrowsing.enabled": False,
    "net.network_prediction_options": 2,  # never preconnect or prefetch
    "search.suggest_enabled": False,
    "signin.allowed": False,
    "signin.allowed_on_next_startup": False,
    "alternate_error_pages.enabled": False,
    "credentials_enable_service": False,
    "autofill.profile_enabled": False,
    # At startup Chromium loads the default search engine's start page (DuckDuckGo here)
    # outside the test's tabs; this engine's is a closed port on loopback.
    "default_search_provider_data.template_url_data": {
        "short_name": "none",
        "keyword": "none",
        "url": "http://127.0.0.1:9/search?q={searchTerms}",
    },
}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def artifacts_dir() -> Path:
    """Where tests leave files for people to look at: `$D2O_TEST_ARTIFACTS`, else
    `<repo>/test-artifacts/`. Created on demand."""
    env = os.environ.get("D2O_TEST_ARTIFACTS")
    path = Path(env).resolve() if env else REPO_ROOT / "test-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_screenshot(driver: "WebDriver", name: str) -> Path:
    """Writes the current viewport as `<artifacts_dir()>/<name>.png` and returns the path.
    `name` may only use letters, digits, `.`, `_` and `-`."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"screenshot name {name!r}: use letters, digits, '.', '_' and '-'")
    path = artifacts_dir() / (name if name.endswith(".png") else name + ".png")
    png = driver.get_screenshot_as_png()
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise RuntimeError(f"Chromium returned no PNG for screenshot {name!r}")
    path.write_bytes(png)
    return path


def wait_for_download(download_dir: Path, name: str, timeout: float = 10.0) -> Path:
    """Path of `download_dir/name` once it exists and no `.crdownload` (Chromium's partial
    file) is left in `download_dir`. Raises TimeoutError listing the directory otherwise."""
    download_dir = Path(download_dir)
    target = download_dir / name
    deadline = time.monotonic() + timeout
    while True:
        partial = list(download_dir.glob("*.crdownload"))
        if target.is_file() and not partial:
            return target
        if time.monotonic() >= deadline:
            present = sorted(p.name for p in download_dir.iterdir()) if download_dir.is_dir() else []
            raise TimeoutError(
                f"download {name!r} not finished in {download_dir} after {timeout:.0f}s; "
                f"directory holds {present}"
            )
        time.sleep(0.05)


class _OffsiteProxy(http.server.ThreadingHTTPServer):
    """The browser's proxy: answers every request 403 and records it. Loopback bypasses it,
    so anything recorded is a request that would have left the machine."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OffsiteHandler)
        self.requests: List[str] = []


class _OffsiteHandler(http.server.BaseHTTPRequestHandler):
    def _refuse(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        self.send_error(403, "d2o tests: the browser may only reach 127.0.0.1")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_CONNECT = _refuse

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def headless_chromium(
    download_dir: Path, offsite_requests: Optional[List[str]] = None
) -> Iterator["WebDriver"]:
    """A headless Chromium whose downloads land in `download_dir` without a prompt.

    Requests that would leave loopback are refused and appended to `offsite_requests` (when
    given) as "METHOD url". The profile and chromedriver's log live in a temp dir removed on
    exit; when the browser cannot start, the error includes that log.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.chrome.webdriver import WebDriver

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            raise RuntimeError(
                f"{binary} is missing: run scripts/browser.sh (installs Debian's chromium and "
                "chromium-driver)"
            )
    download_dir = Path(download_dir).resolve()
    download_dir.mkdir(parents=True, exist_ok=True)

    proxy = _OffsiteProxy()
    threading.Thread(target=proxy.serve_forever, name="offsite-proxy", daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="d2o-chromium-"))
    driver = None
    try:
        home = work / "home"
        home.mkdir()
        options = Options()
        options.binary_location = str(CHROMIUM)
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={work / 'profile'}")
        options.add_argument(f"--proxy-server=http://127.0.0.1:{proxy.server_port}")
        options.add_argument("--proxy-bypass-list=127.0.0.1;localhost;[::1]")
        options.add_argument(
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
        )
        options.add_experimental_option(
            "prefs", {**CHROMIUM_PREFS, "download.default_directory": str(download_dir)}
        )
        # The page's own requests, for offsite_page_requests().
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        # Scheduled component updates off, as the ComponentUpdatesEnabled policy does.
        options.add_experimental_option(
            "localState", {"component_updates.component_updates_enabled": False}
        )
        # Chromium and chromedriver inherit this: nothing is written to the real HOME
        # (~/.pki, ~/.cache/chromium, ~/.config/chromium).
        env = dict(os.environ)
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_CACHE_HOME=str(home / ".cache"),
        )
        log_path = work / "chromedriver.log"
        service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log_path), env=env)
        try:
            driver = WebDriver(service=service, options=options)
        except WebDriverException as e:
            log = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
            raise RuntimeError(f"Chromium did not start: {e.msg}\n--- chromedriver log ---\n{log}") from e
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        # The window is 1280x900 but headless Chromium still reserves room for its toolbars,
        # so the page would get 1280x757; the page itself gets the full size instead.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        # The download prefs alone already work in Chromium 156's headless mode; the CDP call
        # (which wins over them) keeps downloads working where a headless mode ignores prefs.
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(download_dir)},
        )
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        proxy.shutdown()
        proxy.server_close()
        if offsite_requests is not None:
            offsite_requests.extend(proxy.requests)
        shutil.rmtree(work, ignore_errors=True)
        if work.exists():  # a child that had not quite exited yet still held a file
            time.sleep(0.5)
            shutil.rmtree(work)


def offsite_page_requests(driver: "WebDriver") -> List[str]:
    """URLs that the pages asked for (documents, subresources, form posts, fetches) since
    the last call, other than on 127.0.0.1, localhost or [::1]. Chromium's own background
    requests are not page requests; the refusing proxy stops those."""
    offsite = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.requestWillBeSent":
            continue
        url = message["params"]["request"]["url"]
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOOPBACK_HOSTS:
            offsite.append(url)
    return offsite


class Browser(NamedTuple):
    """What the `chromium` fixture yields; unpacks as `driver, downloads = chromium`."""

    driver: "WebDriver"
    downloads: Path


@pytest.fixture
def chromium(tmp_path) -> Iterator[Browser]:
    """A headless Chromium whose downloads go to `tmp_path/downloads`.

    The test fails (at teardown) if a page asked for anything outside loopback. Requests of
    Chromium's own that the proxy refused only raise a warning: a Chromium update may bring a
    new background service, which is no fault of the page under test."""
    downloads = tmp_path / "downloads"
    refused: List[str] = []
    with headless_chromium(downloads, refused) as driver:
        yield Browser(driver, downloads)
        from_pages = offsite_page_requests(driver)
    assert not from_pages, f"the page asked for URLs beyond 127.0.0.1: {from_pages}"
    if refused:
        warnings.warn(f"Chromium tried to leave 127.0.0.1 (refused by the test proxy): {refused}")

"""Self-test of the real-browser harness (browser.py), no d2o server needed.

A tiny `http.server` on 127.0.0.1 acts like the activation flow: GET shows a page whose
button submits a `<form method="post">`; the POST answers with
`Content-Disposition: attachment; filename="config.share"` and a JSON profile; every later GET
shows a "link already used" page. The test clicks through it in headless Chromium, reads the
downloaded file and saves both pages as screenshots.
"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import urllib.parse
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from browser import (
    WINDOW,
    headless_chromium,
    offsite_page_requests,
    save_screenshot,
    wait_for_download,
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ font-family: sans-serif; background: #f4f6f8; margin: 0; }}
 main {{ max-width: 40rem; margin: 6rem auto; background: #fff; padding: 2rem 3rem;
        border-radius: 8px; box-shadow: 0 2px 8px rgba(0,0,0,.15); }}
 button {{ font-size: 1.1rem; padding: .6rem 1.4rem; background: #1f6feb; color: #fff;
          border: 0; border-radius: 6px; }}
</style></head>
<body><main><h1>{title}</h1>{body}</main></body></html>
"""


class ActivationMimic(http.server.ThreadingHTTPServer):
    """One activation link on 127.0.0.1: usable once, then "already used"."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ActivationHandler)
        self.csrf = secrets.token_urlsafe(16)
        self.profile = json.dumps(
            {
                "shareCredentialsVersion": 1,
                "endpoint": f"http://127.0.0.1:{self.server_port}/delta-sharing",
                "bearerToken": secrets.token_urlsafe(24),
            },
            indent=2,
        ).encode()
        self.used = False
        self.posts: List[Dict[str, List[str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/activate/one-time-code"


class _ActivationHandler(http.server.BaseHTTPRequestHandler):
    server: ActivationMimic

    def do_GET(self) -> None:
        if self.path == "/favicon.ico":
            self.send_error(404)
        elif self.server.used:
            self._html(410, "This link was already used", "<p>Ask your data provider for a new one.</p>")
        else:
            form = (
                "<p>Download the profile file to read the shared tables.</p>"
                '<form method="post">'
                f'<input type="hidden" name="csrf" value="{self.server.csrf}">'
                '<button id="download" type="submit">Download config.share</button></form>'
            )
            self._html(200, "Activate your share", form)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.posts.append(urllib.parse.parse_qs(self.rfile.read(length).decode()))
        if self.server.used:
            self._html(410, "This link was already used", "")
            return
        self.server.used = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Disposition", 'attachment; filename="config.share"')
        self.send_header("Content-Length", str(len(self.server.profile)))
        self.end_headers()
        self.wfile.write(self.server.profile)

    def _html(self, status: int, title: str, body: str) -> None:
        data = PAGE.format(title=title, body=body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def activation_link() -> Iterator[ActivationMimic]:
    server = ActivationMimic()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def assert_real_screenshot(path: Path) -> None:
    """A PNG of the whole 1280x900 window that shows more than one flat colour."""
    assert path.is_file() and path.stat().st_size > 5000, path
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == WINDOW, im.size
        darkest, lightest = im.convert("L").getextrema()
    assert lightest - darkest > 128, f"{path} is nearly one colour: {darkest}..{lightest}"


def test_form_post_downloads_profile_then_link_is_used(chromium, activation_link):
    driver, downloads = chromium

    driver.get(activation_link.url)
    assert driver.find_element(By.TAG_NAME, "h1").text == "Activate your share"
    assert driver.find_element(By.ID, "download").text == "Download config.share"
    first = save_screenshot(driver, "browser-harness-activation")

    driver.find_element(By.ID, "download").click()
    profile = wait_for_download(downloads, "config.share", timeout=10)
    assert profile.read_bytes() == activation_link.profile
    assert activation_link.posts == [{"csrf": [activation_link.csrf]}]
    assert sorted(p.name for p in downloads.iterdir()) == ["config.share"]

    driver.get(activation_link.url)
    assert driver.find_element(By.TAG_NAME, "h1").text == "This link was already used"
    assert "new one" in driver.find_element(By.TAG_NAME, "main").text
    second = save_screenshot(driver, "browser-harness-used")

    assert_real_screenshot(first)
    assert_real_screenshot(second)
    assert first.read_bytes() != second.read_bytes()


def test_browser_stays_on_loopback_and_cleans_up(tmp_path, monkeypatch):
    """Nothing leaves 127.0.0.1: Selenium Manager is never run; a page on another host goes to
    the refusing proxy (no DNS lookup, no connection) and is reported as a page request beyond
    loopback; the profile is removed on exit."""
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def no_selenium_manager(*args, **kwargs):
        raise AssertionError("Selenium Manager was asked for a driver")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_selenium_manager)
    refused: List[str] = []
    with headless_chromium(tmp_path / "downloads", refused) as driver:
        profile_dir = Path(driver.capabilities["chrome"]["userDataDir"])
        assert profile_dir.is_dir() and profile_dir.name == "profile", profile_dir
        driver.get("http://d2o-offsite-guard.invalid/page")
        assert "may only reach 127.0.0.1" in driver.find_element(By.TAG_NAME, "body").text
        assert "http://d2o-offsite-guard.invalid/page" in offsite_page_requests(driver)
    assert "GET http://d2o-offsite-guard.invalid/page" in refused, refused
    assert not profile_dir.parent.exists(), f"{profile_dir.parent} was not removed"


def test_wait_for_download_waits_for_partial_files(tmp_path):
    (tmp_path / "config.share").write_text("{}")
    (tmp_path / "other.crdownload").write_text("")
    with pytest.raises(TimeoutError, match="other.crdownload"):
        wait_for_download(tmp_path, "config.share", timeout=0.2)
    (tmp_path / "other.crdownload").unlink()
    assert wait_for_download(tmp_path, "config.share", timeout=0.2) == tmp_path / "config.share"

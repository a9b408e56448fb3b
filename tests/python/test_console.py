"""The web console in a real browser (headless Chromium), with the official connector.

A provider logs in with the admin token, creates a share, adds a fixture table, creates a
recipient and gets its activation link once. The recipient opens the link in the browser and
downloads `config.share`; the provider grants the share; the connector reads; the read shows in
the audit page and the usage chart; revoking in the console makes the connector fail. Every
page is screenshotted at 1280 px and at phone width (`test-artifacts/console-*.png`).
Names that are HTML render as text and run nothing. Sessions, CSRF tokens and the origin
check are also tested over plain HTTP, outside the browser."""

from __future__ import annotations

import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import delta_sharing
import pytest
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from browser import save_screenshot, wait_for_download
from conftest import fixture_by_name
from test_security import audit, start, stop

ADMIN_TOKEN = secrets.token_hex(24)
PHONE = (390, 844)


def serve(work: Path):
    catalog = work / "d2o.db"
    server = start(work, ["--catalog", str(catalog)], env={"D2O_ADMIN_TOKEN": ADMIN_TOKEN})
    # The browser uses `localhost`, where Secure cookies work over plain HTTP.
    return catalog, server, f"http://localhost:{server.port}"


def fill(driver, form_action: str, values: dict) -> None:
    """Fills the form posting to `form_action` and submits it."""
    form = driver.find_element(By.CSS_SELECTOR, f"form[action='{form_action}']")
    for name, value in values.items():
        field = form.find_element(By.NAME, name)
        if field.tag_name == "select":
            Select(field).select_by_value(value)
        elif field.get_attribute("type") == "checkbox":
            if field.is_selected() != bool(value):
                field.click()
        else:
            field.clear()
            field.send_keys(value)
    driver.execute_script("window.d2oOldPage = true")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    loaded(driver)


def loaded(driver) -> None:
    """Waits until a new page replaced the one marked `d2oOldPage` and finished loading."""
    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.d2oOldPage && document.readyState === 'complete'"))


def flash(driver) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, ".flash")
    assert found, f"no message on {driver.current_url}: {driver.page_source[:2000]}"
    return found[0].text


def no_alert(driver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - raises when no script opened a dialog


def fits(driver) -> bool:
    """Whether the page fits the window's width (no sideways scrolling of the whole page)."""
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")


def shots(driver, name: str) -> None:
    """Screenshots the current page at 1280 px and at phone width; both must fit."""
    save_screenshot(driver, f"console-{name}")
    assert fits(driver), f"{name} is wider than the window"
    width, height = PHONE
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    try:
        assert driver.execute_script("return window.innerWidth") == width
        save_screenshot(driver, f"console-{name}-phone")
        assert fits(driver), f"{name} is wider than a phone"
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_provider_shares_with_a_recipient_in_the_console(tmp_path, chromium):
    catalog, server, base = serve(tmp_path)
    driver, downloads = chromium
    try:
        driver.get(f"{base}/console")
        assert driver.current_url.endswith("/console/login")
        shots(driver, "login")
        fill(driver, "/console/login", {"token": "not-the-token"})
        assert "not the admin token" in flash(driver)
        fill(driver, "/console/login", {"token": ADMIN_TOKEN})
        assert driver.find_element(By.TAG_NAME, "h1").text == "Overview"
        cookie = driver.get_cookie("d2o_console")
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie

        driver.find_element(By.LINK_TEXT, "Shares").click()
        fill(driver, "/console/shares", {"name": "external_retail", "comment": "Retail data for partners"})
        assert "Share external_retail created." in flash(driver)
        table = fixture_by_name("simple_table").delta_dir
        fill(driver, "/console/shares/external_retail/tables",
             {"schema": "retail", "table": "sales", "location": "/no/such/table"})
        assert "No Delta table at /no/such/table" in flash(driver)
        fill(driver, "/console/shares/external_retail/tables",
             {"schema": "retail", "table": "sales", "location": str(table)})
        assert "Table retail.sales added." in flash(driver)
        assert str(table) in driver.find_element(By.TAG_NAME, "main").text
        shots(driver, "share")

        driver.find_element(By.LINK_TEXT, "Recipients").click()
        fill(driver, "/console/recipients", {"name": "partner_co", "comment": "Partner Co analytics"})
        link = driver.find_element(By.ID, "link").text
        assert re.fullmatch(rf"{re.escape(base)}/delta-sharing/activate/[A-Za-z0-9_-]{{40,}}", link), link
        shots(driver, "activation-link")
        driver.find_element(By.LINK_TEXT, "Go to partner_co").click()
        assert link not in driver.page_source, "the link is shown once"
        assert "awaiting activation" in driver.find_element(By.TAG_NAME, "main").text

        # The recipient activates in the browser.
        driver.get(link)
        driver.find_element(By.ID, "download").click()
        profile = wait_for_download(downloads, "config.share")

        driver.get(f"{base}/console/recipients/partner_co")
        fill(driver, "/console/grants", {"share": "external_retail"})
        assert "partner_co can now read share external_retail." in flash(driver)
        rows = delta_sharing.load_as_pandas(f"{profile}#external_retail.retail.sales")
        assert len(rows) > 0
        driver.refresh()
        shots(driver, "recipient")

        driver.get(f"{base}/console/audit?recipient=partner_co&action=query")
        audit_rows = driver.find_element(By.ID, "audit").text
        assert "query" in audit_rows and "external_retail.retail.sales" in audit_rows, audit_rows
        shots(driver, "audit")
        driver.get(f"{base}/console")
        chart = driver.find_element(By.ID, "usage-recipients")
        assert "partner_co" in chart.text, chart.text
        assert chart.find_elements(By.CSS_SELECTOR, "svg rect title"), "the read is a bar"
        assert "external_retail.retail.sales" in driver.find_element(By.ID, "usage-tables").text
        shots(driver, "overview")

        # Revoking in the console stops the connector.
        driver.get(f"{base}/console/recipients/partner_co")
        driver.execute_script("window.d2oOldPage = true")
        driver.find_element(By.XPATH, "//button[text()='Revoke all credentials']").click()
        driver.switch_to.alert.accept()
        loaded(driver)
        assert "is revoked" in flash(driver)
        with pytest.raises(Exception) as refused:
            delta_sharing.load_as_pandas(f"{profile}#external_retail.retail.sales")
        assert "401" in str(refused.value) or "Unauthorized" in str(refused.value), refused.value
        actions = [e["action"] for e in audit(catalog)]
        for action in ["admin.share.create", "admin.share.add_table", "admin.recipient.create", "admin.grant",
                       "admin.recipient.revoke", "admin.console.login"]:
            assert action in actions, (action, sorted(set(actions)))
    finally:
        stop(server.proc)


def test_html_in_names_renders_as_text(tmp_path, chromium):
    _, server, base = serve(tmp_path)
    driver, _ = chromium
    try:
        driver.get(f"{base}/console/login")
        fill(driver, "/console/login", {"token": ADMIN_TOKEN})
        driver.get(f"{base}/console/shares")
        share = "<img src=x onerror=alert(1)>"
        fill(driver, "/console/shares", {"name": share, "comment": "<script>alert(2)</script>"})
        no_alert(driver)
        assert share in driver.find_element(By.TAG_NAME, "h1").text
        driver.get(f"{base}/console/shares")
        no_alert(driver)
        assert "<script>alert(2)</script>" in driver.find_element(By.TAG_NAME, "main").text
        driver.get(f"{base}/console/recipients")
        fill(driver, "/console/recipients", {"name": "r<b>x", "comment": "\"><svg onload=alert(3)>",
                                             "properties": "k=<i>v</i>"})
        no_alert(driver)
        driver.get(f"{base}/console/recipients")
        no_alert(driver)
        text = driver.find_element(By.TAG_NAME, "main").text
        assert "r<b>x" in text and "\"><svg onload=alert(3)>" in text, text
        assert not driver.find_elements(By.CSS_SELECTOR, "main b, main svg[onload], main img[onerror]")
        save_screenshot(driver, "console-escaped-names")
    finally:
        stop(server.proc)


def _post(url: str, fields: dict, headers: dict):
    """A form post without following redirects: (status, headers, body)."""
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded", **headers})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def test_console_refuses_requests_without_session_csrf_or_origin(tmp_path):
    catalog, server, _ = serve(tmp_path)
    base = server.base
    origin = {"Origin": base}
    try:
        status, _, _ = _post(f"{base}/console/shares", {"name": "a"}, origin)
        assert status == 401, "no session"
        status, headers, _ = _post(f"{base}/console/login", {"token": ADMIN_TOKEN}, origin)
        assert status == 303
        cookie = headers["Set-Cookie"].split(";")[0]
        page = urllib.request.urlopen(urllib.request.Request(f"{base}/console/shares", headers={"Cookie": cookie}))
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.read().decode()).group(1)
        session = {"Cookie": cookie}
        assert _post(f"{base}/console/shares", {"name": "a", "csrf": "wrong"}, {**session, **origin})[0] == 403
        assert _post(f"{base}/console/shares", {"name": "a"}, {**session, **origin})[0] == 403
        assert _post(f"{base}/console/shares", {"name": "a", "csrf": csrf},
                     {**session, "Origin": "http://evil.example"})[0] == 403
        assert _post(f"{base}/console/shares", {"name": "a", "csrf": csrf},
                     {**session, "Sec-Fetch-Site": "cross-site"})[0] == 403
        assert not [e for e in audit(catalog) if e["action"] == "admin.share.create"], "nothing was done"
        assert _post(f"{base}/console/shares", {"name": "a", "csrf": csrf}, {**session, **origin})[0] == 303
        assert [e for e in audit(catalog) if e["action"] == "admin.share.create"]
    finally:
        stop(server.proc)

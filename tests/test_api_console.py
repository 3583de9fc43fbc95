"""The console in a real browser: headless Chromium (Debian's chromium and chromium-driver) signs in
with a token, adds a registry of the real htpasswd fixture (its CA pasted as text), validates, disables
and removes it, and saves a screenshot of the list. And the console's own guards: CSRF, the cookie."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from support.api import Served, app_for, start_serve, token
from support.registry import RegistryFixture

from regauth.config import Settings
from regauth.registries import RegistryBook

ClientFactory = Callable[..., Awaitable[TestClient]]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(regauth_exe: str, tmp_path: Path) -> Iterator[Served]:
    server = start_serve(regauth_exe, log_dir=tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _token(exe: str, name: str, scope: str) -> str:
    done = subprocess.run([exe, "token", "create", name, "--scope", scope], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _note(driver: WebDriver, expected: str) -> str:
    """The note of the page a click leads to, once it says ``expected`` (a click returns before the
    browser has followed the form's redirect)."""
    located = (By.ID, "note")
    WebDriverWait(driver, 30).until(expected_conditions.text_to_be_present_in_element(located, expected))
    return driver.find_element(*located).text


def test_sign_in_add_validate_disable_remove(
    browser: WebDriver,
    served: Served,
    regauth_exe: str,
    registry_htpasswd: RegistryFixture,
    settings: Settings,
    tmp_path: Path,
) -> None:
    fx = registry_htpasswd
    assert fx.ca_file and fx.username and fx.password
    secret = _token(regauth_exe, "console", "write")
    pages: list[str] = []
    browser.get(served.url + "/")
    browser.find_element(By.ID, "token").send_keys(secret)
    browser.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "add")))
    assert "console" in browser.find_element(By.TAG_NAME, "header").text
    browser.find_element(By.ID, "add").click()
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "ca_pem")))
    browser.find_element(By.ID, "name").send_keys("ht")
    browser.find_element(By.ID, "url").send_keys(f"https://{fx.host}")
    browser.find_element(By.ID, "username").send_keys(fx.username)
    browser.find_element(By.ID, "password").send_keys(fx.password)
    browser.find_element(By.ID, "ca_pem").send_keys(Path(fx.ca_file).read_text())
    browser.find_element(By.ID, "repository").send_keys(fx.repository)
    browser.find_element(By.ID, "save").click()
    pages.append(browser.page_source)
    _note(browser, "added registry 'ht'")
    row = browser.find_element(By.ID, "row-ht")
    assert fx.host in row.text and "valid" in row.find_element(By.CLASS_NAME, "outcome").text
    # The edit form never fills the secret back in.
    row.find_element(By.LINK_TEXT, "Edit").click()
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "password")))
    assert browser.find_element(By.ID, "password").get_attribute("value") == ""
    pages.append(browser.page_source)
    browser.find_element(By.LINK_TEXT, "Cancel").click()
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "row-ht")))
    browser.find_element(By.CSS_SELECTOR, "#row-ht button[name=validate]").click()
    _note(browser, "accepted")
    pages.append(browser.page_source)
    browser.find_element(By.CSS_SELECTOR, "#row-ht button[name=disable]").click()
    _note(browser, "disabled registry 'ht'")
    assert browser.find_element(By.CSS_SELECTOR, "#row-ht .active").text == "no"
    assert RegistryBook.for_settings(settings).get("ht").active is False
    pages.append(browser.page_source)
    shot = tmp_path / "console-list.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    browser.find_element(By.CSS_SELECTOR, "#row-ht button[name=remove]").click()
    _note(browser, "removed registry 'ht'")
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "empty")))
    pages.append(browser.page_source)
    assert RegistryBook.for_settings(settings).all() == []
    log = served.stop()
    for text in (*pages, log):
        assert fx.password not in text and secret not in text


async def test_forms_refuse_cross_site_posts(aiohttp_client: ClientFactory, settings: Settings) -> None:
    client = await aiohttp_client(app_for(settings))
    secret = token(settings, "console", "write")
    origin = f"http://{client.host}:{client.port}"
    # Signing in from another site (login CSRF) is refused, and so is a form that rides the cookie.
    resp = await client.post("/login", data={"token": secret}, headers={"Origin": "https://evil.test"})
    assert resp.status == 403
    resp = await client.post(
        "/login", data={"token": secret}, headers={"Origin": origin}, allow_redirects=False
    )
    assert resp.status == 303
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    body = {"name": "x", "url": "http://127.0.0.1:1", "insecure": "1", "active": "1"}
    for headers in ({"Origin": "https://evil.test"}, {"Referer": "https://evil.test/page"}, {}):
        resp = await client.post("/registries/new", data=body, headers=headers)
        assert resp.status == 403, headers
    assert RegistryBook.for_settings(settings).all() == []
    resp = await client.post("/registries/new", data=body, headers={"Origin": origin})
    assert resp.status == 200 and "added registry" in await resp.text()  # after the redirect
    assert "added registry" not in await (await client.get("/")).text()  # shown once


async def test_a_read_token_cannot_change_and_a_bad_token_cannot_sign_in(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    client = await aiohttp_client(app_for(settings))
    origin = f"http://{client.host}:{client.port}"
    resp = await client.post("/login", data={"token": "rgt_nope"}, headers={"Origin": origin})
    assert resp.status == 401 and "unknown or revoked" in await resp.text()
    reader = token(settings, "reader", "read")
    await client.post("/login", data={"token": reader}, headers={"Origin": origin})
    resp = await client.get("/registries/new")
    assert resp.status == 403
    resp = await client.get("/")
    assert resp.status == 200 and "Content-Security-Policy" in resp.headers

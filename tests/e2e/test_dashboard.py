"""The built-in web dashboard in a real headless Chromium, against a running peakwatch fed by the demo
simulators (embedded MQTT broker, collector, processor, API on the test database).

One scenario, as an operator lives it: log in with a one-time password and choose a new one, see both
demo sites with numbers, watch a value change when the next window closes, see the refused input of
the last 24 hours by reason and open the refused messages of one reason, switch to Chinese and back,
open a site's charts, acknowledge an alert that fires meanwhile, and never see a console error.
Screenshots go to test-artifacts/dashboard-*.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import ConsoleMessage, Page, async_playwright, expect

from cli.stack import Stack, running_stack
from peakwatch.accounts import new_user
from peakwatch.config import Registry, Settings
from peakwatch.domain.access import AccessRole
from peakwatch.domain.models import AlertChange, DeadLetter, ProcessedBatch
from simulators.options import SimulationOptions
from simulators.publisher import run_simulation
from tests.support import bearer, eventually, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DC, PARK = "dc-xiangjiang", "park-changsha"
NEW_PASSWORD = "a long new passphrase"
NEXT_WINDOW_MS = 90_000
"""A 1-minute window closes every minute (plus the 2 s lateness); the page refreshes every 10 s."""

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)", allow_module_level=True)


@pytest.fixture
async def demo_stack(database_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """``peakwatch up`` on the test database: embedded broker, the whole pipeline, the demo feed (10
    minutes of backfill, then real time)."""
    settings = Settings(
        database_url=database_url,
        mqtt_port=free_port(),
        api_port=free_port(),
        data_dir=tmp_path,
        mqtt_client_id=f"pw-dash-{uuid.uuid4().hex[:8]}",
        allowed_lateness_ms=2_000,
        idle_close_ms=1_000,
    )
    registry = Registry.bundled_demo()
    async with running_stack(settings, registry) as stack:
        stop = asyncio.Event()
        options = SimulationOptions.demo(registry_sites=list(registry.sites))
        feed = asyncio.create_task(run_simulation(options, mqtt_url=stack.mqtt_url, stop=stop))
        try:
            yield stack
        finally:
            stop.set()
            await asyncio.wait({feed}, timeout=10)
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed


async def one_time_user(stack: Stack, name: str) -> str:
    """An operator whose password must be changed at the first login, as `peakwatch users add` makes."""
    assert stack.store is not None
    user, password = new_user(name, AccessRole.OPERATOR, None, None, int(time.time() * 1000))
    await stack.store.access.add_user(user)
    return password


async def fire_alert(stack: Stack) -> int:
    """A firing alert written the way the processor writes one (the store NOTIFYs at commit)."""
    assert stack.store is not None
    now = int(time.time() * 1000)
    rule = "dashboard_e2e"
    change = AlertChange(
        fingerprint=f"{rule}/{DC}",
        rule=rule,
        site_id=DC,
        state="firing",
        severity="critical",
        summary="PUE 1.62 above the 1.5 retrofit line (test)",
        value=1.62,
        started_ms=now - 300_000,
        at_ms=now,
        labels={"alertname": rule, "site": DC, "severity": "critical"},
    )
    await stack.store.write(ProcessedBatch(alerts=[change]))
    alerts = await stack.store.list_alerts(site_id=DC, state="firing")
    return next(a.id for a in alerts if a.rule == rule)


REFUSED_REASON = "dashboard_e2e"
"""A reason code of this test's own (no translation: the page shows the code), so its count is exact."""


async def refuse_input(stack: Stack) -> None:
    """Dead letters as the collector writes them: 3 of this test's reason at the data centre, 2
    unregistered-meter messages at the park, and 1 of no site, which an operator does not see."""
    assert stack.store is not None
    now = int(time.time() * 1000)

    def letter(reason: str, site: str | None, meter: str | None, i: int) -> DeadLetter:
        return DeadLetter(
            received_ms=now - 60_000 + i,
            source=f"telemetry/{site}/{meter}" if site else "telemetry/no-site",
            reason=reason,
            detail=f"dashboard test {i}",
            payload=b"{}",
            site_id=site,
            meter_id=meter,
        )

    letters = [letter(REFUSED_REASON, DC, "facility", i) for i in range(3)]
    letters += [letter("unknown_meter", PARK, "e2e-unregistered", 3 + i) for i in range(2)]
    letters.append(letter("bad_topic", None, None, 5))
    await stack.store.write(ProcessedBatch(dead_letters=letters))


async def has_window(api: httpx.AsyncClient, site: str) -> bool:
    return (await api.get(f"/api/v1/sites/{site}/kpis/latest")).is_success


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


async def test_dashboard_live_languages_and_acknowledgement(demo_stack: Stack) -> None:
    stack = demo_stack
    assert stack.store is not None
    user = f"ops-{uuid.uuid4().hex[:6]}"
    one_time = await one_time_user(stack, user)
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=await bearer(stack.store), timeout=10
    ) as api:
        # The backfill closes windows within seconds; the page is opened once both sites have some.
        for site in (DC, PARK):
            await eventually(
                functools.partial(has_window, api, site), f"first window of {site}", timeout_s=60
            )
        problems: list[str] = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                context = await browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
                page = await context.new_page()
                page.on("console", functools.partial(record_console, problems))
                page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
                await refuse_input(stack)
                await page.goto(f"{stack.api_url}/")
                await log_in_and_change_password(page, user, one_time)
                await overview_shows_live_numbers(page)
                await overview_shows_refused_input(page, stack.api_url)
                await languages_switch(page)
                await site_page_charts_and_range(page)
                alert_id = await fire_alert(stack)
                await acknowledge_in_page(page, alert_id, user)
                answer = (await api.get("/api/v1/alerts", params={"site_id": DC, "state": "firing"})).json()
                assert [a["acknowledged_by"] for a in answer if a["id"] == alert_id] == [user]
                await park_page_flows(page, stack.api_url)
                await context.close()
            finally:
                await browser.close()
        assert problems == []


def record_console(problems: list[str], message: ConsoleMessage) -> None:
    if message.type in ("error", "warning"):
        problems.append(f"console {message.type}: {message.text} ({message.location})")


async def log_in_and_change_password(page: Page, user: str, one_time: str) -> None:
    await page.fill("#login-form [name=username]", user)
    await page.fill("#login-form [name=password]", one_time)
    await screenshot(page, "login")
    await page.click("#login-form button[type=submit]")
    await page.fill("#password-form [name=new]", NEW_PASSWORD)
    await page.fill("#password-form [name=repeat]", NEW_PASSWORD)
    await page.click("#password-form button[type=submit]")


async def overview_shows_live_numbers(page: Page) -> None:
    """Both demo sites with plausible numbers; then the next closed window replaces them, no reload."""
    dc_row = page.locator(f"tr[data-site='{DC}']")
    park_row = page.locator(f"tr[data-site='{PARK}']")
    share = re.compile(r"^\d+(\.\d)?%$")
    await expect(page.locator("h1")).to_have_text("All sites")
    await expect(dc_row.locator("[data-kpi=pue]")).to_have_text(re.compile(r"^1\.\d\d$"))
    await expect(dc_row.locator("[data-status]")).to_have_text("Live")
    await expect(park_row.locator("[data-kpi=electrification_rate]")).to_have_text(share)
    await expect(park_row.locator("[data-kpi=carbon_intensity]")).to_have_text(re.compile(r"^0\.\d{3}$"))
    await expect(park_row.locator("[data-kpi=green_power_share]")).to_have_text(share)
    await expect(park_row.locator("[data-kpi=alerts]")).to_have_text("0")
    await screenshot(page, "overview")
    shown = await dc_row.get_attribute("data-window-ms")
    assert shown
    await expect(dc_row).not_to_have_attribute("data-window-ms", shown, timeout=NEXT_WINDOW_MS)
    newer = await dc_row.get_attribute("data-window-ms")
    assert newer is not None
    assert int(newer) > int(shown)


async def overview_shows_refused_input(page: Page, api_url: str) -> None:
    """Counts by reason over the last 24 hours, each a link to those messages in the API; the data
    centre's row counts its refused messages; the letter of no site is not shown to an operator."""
    card = page.locator("#dead-letters")
    ours = card.locator(f"tr[data-reason='{REFUSED_REASON}']")
    await expect(ours.locator("td").first).to_have_text(REFUSED_REASON)  # no translation: the code
    await expect(ours.locator("[data-count]")).to_have_text("3")
    await expect(card.locator("tr[data-reason='unknown_meter'] td").first).to_have_text(
        "Unregistered meter (quarantine)"
    )
    await expect(card.locator("[data-nosite]")).to_have_count(0)
    await expect(page.locator(f"tr[data-site='{DC}'] [data-kpi=dead_letters]")).to_have_text(
        re.compile(r"^[1-9]")
    )
    await screenshot(page, "overview-refused")
    href = await ours.locator("a").get_attribute("href")
    assert href is not None
    assert href.startswith(f"/api/v1/dead-letters?reason={REFUSED_REASON}&from=")
    listed = await page.request.get(f"{api_url}{href}")  # with the page's session cookie
    assert listed.ok
    assert listed.headers["x-total-count"] == "3"
    assert [d["detail"] for d in await listed.json()] == [f"dashboard test {i}" for i in (2, 1, 0)]


async def languages_switch(page: Page) -> None:
    """Chinese and back; the choice survives a reload."""
    await page.select_option("#lang", "zh-CN")
    await expect(page.locator("h1")).to_have_text("全部站点")
    await expect(page.locator("table.sites th").nth(3)).to_have_text("电气化率")
    await expect(page.locator(f"tr[data-site='{DC}'] [data-status]")).to_have_text("实时")
    await expect(page.locator("#dead-letters h2")).to_have_text("近 24 小时被拒收的数据")
    await expect(page.locator("#dead-letters tr[data-reason='unknown_meter'] td").first).to_have_text(
        "未注册的计量表（隔离）"
    )
    await screenshot(page, "overview-zh")
    await page.reload()
    await expect(page.locator("h1")).to_have_text("全部站点")
    await page.select_option("#lang", "en")
    await expect(page.locator("h1")).to_have_text("All sites")


async def site_page_charts_and_range(page: Page) -> None:
    await page.locator(f"tr[data-site='{DC}'] a[href^='#/site/']").click()
    await expect(page.locator("figure[data-chart=pue] path.line")).to_be_visible()
    await expect(page.locator("figure[data-chart=pue] line.ref")).to_have_count(2)  # 1.3 and 1.5
    await expect(page.locator("figure[data-chart=flows] path.line")).to_have_count(2)  # site, IT
    await expect(page.locator("#meters tbody tr")).to_have_count(5)
    await expect(page.locator("#meters [data-meter=facility] .badge")).to_have_text("OK")
    csv = await page.locator("a[data-csv]").get_attribute("href")
    assert csv is not None
    assert csv.startswith(f"/api/v1/sites/{DC}/kpis.csv?period=1m&from=")
    await page.click("button[data-range='6h']")
    await expect(page.locator("button[data-range='6h']")).to_have_attribute("aria-pressed", "true")
    assert page.url.endswith(f"#/site/{DC}?range=6h")
    await expect(page.locator("figure[data-chart=pue] path.line")).to_be_visible()
    await expect(page.locator("#alerts")).to_contain_text("No firing alerts.")


async def acknowledge_in_page(page: Page, alert_id: int, user: str) -> None:
    """The alert written meanwhile appears without a reload (its stream event refreshes the page)."""
    item = page.locator(f"#alerts li[data-alert-id='{alert_id}']")
    # the stream's event refreshes the list at once; the 10 s poll is the fallback, hence the timeout
    await expect(item).to_contain_text("above the 1.5 retrofit line", timeout=20_000)
    await item.get_by_role("button", name="Acknowledge").click()
    await expect(item.locator(".acked")).to_have_text(f"Acknowledged by {user}", timeout=20_000)
    await screenshot(page, "site")


async def park_page_flows(page: Page, api_url: str) -> None:
    await page.goto(f"{api_url}/#/site/{PARK}")
    await expect(page.locator("figure[data-chart=pue]")).to_have_count(0)  # PUE is for data centres
    flows = page.locator("figure[data-chart=flows]")
    await expect(flows.locator("path.line").first).to_be_visible()
    for series in ("Site consumption", "PV + wind generation", "Grid import", "Storage charge"):
        await expect(flows.locator(".legend")).to_contain_text(series)
    await screenshot(page, "park")

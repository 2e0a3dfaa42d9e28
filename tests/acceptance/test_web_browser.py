"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, via Selenium),
served by uvicorn on 127.0.0.1, on every database: load each page, filter, retry a failed
job, discard another, act on every job matching a filter, and read the table afterwards.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from delayed.web import create_app
from tests.web_helpers import Later, chromium, fail_jobs, serve

pytestmark = pytest.mark.slow


def table_ids(driver: Any) -> list[int]:
    return [
        int(row.get_attribute("data-id")) for row in driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
    ]


def text_of(driver: Any, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def click(driver: Any, css: str) -> None:
    driver.find_element(By.CSS_SELECTOR, css).click()


def wait_for_url(driver: Any, fragment: str) -> None:
    WebDriverWait(driver, 20).until(expected_conditions.url_contains(fragment))


def test_operator_story_in_chromium(db) -> None:
    mail = fail_jobs("mail", 3)
    reports = fail_jobs("reports", 2)
    ready = [Later.set(queue="default", priority="interactive").perform_later(i) for i in range(2)]
    scheduled = Later.set(queue="default", wait=3600).perform_later("later")
    xss = Later.set(queue="default").perform_later("<img src=x onerror=alert(1)>")
    app = create_app(refresh=0, page_size=2, sample_interval=0)
    with serve(app) as base, chromium() as driver:
        # Overview: the cards and the queue table show the table's state.
        driver.get(base + "/")
        assert driver.title == "Overview · delayed"
        assert text_of(driver, "#total-failed .n") == "5"
        assert text_of(driver, "#total-ready .n") == str(len(ready) + 1)
        assert text_of(driver, "#total-scheduled .n") == "1"
        mail_row = driver.find_element(By.CSS_SELECTOR, '#queues tr[data-queue="mail"]')
        assert mail_row.find_element(By.CSS_SELECTOR, ".c-failed").text == "3"
        assert len(driver.find_elements(By.CSS_SELECTOR, ".chart svg polyline")) >= 4

        # The failed card leads to the failed jobs, newest first, two per page.
        click(driver, "#total-failed")
        wait_for_url(driver, "state=failed")
        assert table_ids(driver) == sorted(mail + reports, reverse=True)[:2]
        click(driver, "#next-page")
        wait_for_url(driver, "after=")
        assert table_ids(driver) == sorted(mail + reports, reverse=True)[2:4]

        # Filter by queue (typed into the form, submitted with the button).
        field = driver.find_element(By.ID, "f-queue")
        field.clear()
        field.send_keys("mail")
        click(driver, "#apply")
        wait_for_url(driver, "queue=mail")
        assert table_ids(driver) == sorted(mail, reverse=True)[:2]
        driver.get(base + "/jobs?state=failed&queue=mail&error=user1%40example")
        assert table_ids(driver) == [mail[1]]
        assert "SMTP refused user1@example.com" in text_of(driver, f"#job-{mail[1]} td.error")

        # Retry one failed job: tick it, "Retry selected", confirm.
        driver.get(base + "/jobs?state=failed&queue=mail")
        driver.find_element(By.CSS_SELECTOR, f'#job-{mail[2]} input[name="ids"]').click()
        click(driver, "#selected-retry")
        wait_for_url(driver, "/actions/confirm")
        assert text_of(driver, "h1") == "Retry 1 job?"
        assert db.row(mail[2])["failed_at"] is not None  # nothing changed before confirming
        click(driver, "#confirm-button")
        wait_for_url(driver, "state=failed&queue=mail")
        assert text_of(driver, "#flash") == f"Retried 1 job ({mail[2]})."
        assert table_ids(driver) == [mail[1], mail[0]]
        assert db.row(mail[2])["failed_at"] is None and db.row(mail[2])["attempts"] == 0

        # Discard another from its own page (a JavaScript confirm() first).
        click(driver, f"#job-{mail[1]} td a")
        wait_for_url(driver, f"/jobs/{mail[1]}")
        assert "SMTP refused user1@example.com" in text_of(driver, "#last-error")
        assert "Traceback (most recent call last)" in text_of(driver, "#last-error")
        click(driver, "#do-discard")
        WebDriverWait(driver, 10).until(expected_conditions.alert_is_present())
        driver.switch_to.alert.accept()
        wait_for_url(driver, "/jobs")
        assert text_of(driver, "#flash") == f"Discarded 1 job ({mail[1]})."
        assert db.row(mail[1]) is None
        driver.get(base + "/jobs?state=failed&queue=mail")
        assert table_ids(driver) == [mail[0]]

        # Every job matching a filter: the confirmation counts them, then they go.
        driver.get(base + "/jobs?state=failed&queue=reports")
        click(driver, "#matching-discard")
        wait_for_url(driver, "/actions/confirm")
        assert text_of(driver, "h1") == "Discard 2 jobs?"
        click(driver, "#confirm-button")
        wait_for_url(driver, "queue=reports")
        assert text_of(driver, "#no-jobs") == "No jobs match."
        assert all(db.row(i) is None for i in reports)

        # The other states load, in their own orders.
        driver.get(base + "/jobs?state=scheduled")
        assert table_ids(driver) == [scheduled]
        driver.get(base + "/jobs?state=ready")
        assert table_ids(driver) == ready  # interactive first: pickup order

        # Arguments are shown as text, never run as markup.
        driver.get(base + f"/jobs/{xss}")
        assert "<img src=x onerror=alert(1)>" in text_of(driver, "#arguments")
        assert driver.find_elements(By.CSS_SELECTOR, "#arguments img") == []
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018 - no alert was opened by the page

        # What is left, as the overview counts it.
        driver.get(base + "/")
        assert text_of(driver, "#total-failed .n") == "1"
    assert [r["id"] for r in db.rows(failed_at=None)] == [mail[2], *ready, scheduled, xss]


def test_pages_refresh_themselves(db) -> None:
    first = fail_jobs("mail", 1)
    app = create_app(refresh=1, sample_interval=0)
    with serve(app) as base, chromium() as driver:
        driver.get(base + "/jobs?state=failed")
        assert table_ids(driver) == first
        later = fail_jobs("mail", 1)  # no navigation: the page reloads itself
        WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: table_ids(d) == later + first
        )
        # A ticked box holds the reloads, so a selection is never lost.
        driver.find_element(By.CSS_SELECTOR, f'#job-{later[0]} input[name="ids"]').click()
        marker = driver.find_element(By.ID, "jobs")
        fail_jobs("mail", 1)
        deadline = time.monotonic() + 4  # four refresh periods
        while time.monotonic() < deadline:
            assert not _stale(marker), "the page reloaded while a job was selected"
            time.sleep(0.2)
        assert driver.find_element(By.CSS_SELECTOR, f'#job-{later[0]} input[name="ids"]').is_selected()
        assert table_ids(driver) == later + first  # the newest failure waits for the next reload
        driver.find_element(By.CSS_SELECTOR, f'#job-{later[0]} input[name="ids"]').click()  # untick
        WebDriverWait(driver, 30).until(lambda d: _stale(marker))
        WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: len(table_ids(d)) == 3
        )


def _stale(element: Any) -> bool:
    """True once the page was reloaded (the old element is gone)."""
    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True


def test_read_only_in_the_browser(db) -> None:
    (job_id,) = fail_jobs("mail", 1)
    with serve(create_app(read_only=True, refresh=0)) as base, chromium() as driver:
        for path in ("/", "/jobs?state=failed", f"/jobs/{job_id}"):
            driver.get(base + path)
            assert text_of(driver, "#read-only") == "read-only"
            assert driver.find_elements(By.CSS_SELECTOR, "form[method=post], input[name=ids]") == []

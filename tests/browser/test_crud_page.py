"""The records page of examples/crud.py in a real browser: headless Chromium creates a record
from the textarea, sees it listed, edits it, deletes it (after a confirmation), and sees the
server's errors; it lists every record however many pages they take, refuses an empty record
itself, shows the server's truth after a failed write, keeps right-to-left text and direction
overrides inside the string they belong to, and a page of another origin cannot make it write.

Every wait is Playwright's auto-waiting ``expect`` with a deadline; the API is checked with
``requests`` beside the page, so the page and the database are seen to agree."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import requests

from evserve import App

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture fails (CI) or skips (elsewhere) with the reason
    expect = None
else:
    expect.set_options(timeout=10_000)

TIMEOUT = 10


def records(url: str) -> list[dict]:
    """Every record the server holds, following its next links."""
    found: list[dict] = []
    next_url: str | None = url + "/data?limit=1000"
    while next_url:
        res = requests.get(next_url, timeout=TIMEOUT)
        assert res.status_code == 200
        found += res.json()
        next_url = res.links.get("next", {}).get("url")
        next_url = url + next_url if next_url else None
    return found


def create(url: str, data: dict, session: requests.Session | None = None) -> int:
    res = (session or requests).post(url + "/data", json=data, timeout=TIMEOUT)
    assert res.status_code == 201, res.text
    return int(res.json()["id"])


def row_ids(page) -> list[str]:
    return page.locator("#records tr").evaluate_all("rows => rows.map(row => row.dataset.id)")


def answer_dialogs(page, accept: bool) -> list[str]:
    """Answer every confirm() on ``page``; returns the list their messages are added to."""
    messages: list[str] = []

    def on_dialog(dialog) -> None:
        messages.append(dialog.message)
        if accept:
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    return messages


def requests_to(page, method: str) -> list[str]:
    """The URLs of the page's ``method`` requests to /data, as they are made."""
    seen: list[str] = []
    page.on("request", lambda req: seen.append(req.url) if req.method == method and "/data" in req.url else None)
    return seen


def test_create_list_edit_and_delete_a_record(page, example_url):
    confirmations = answer_dialogs(page, accept=True)
    page.goto(example_url + "/")
    expect(page).to_have_title("evserve records")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#records tr")).to_have_count(0)
    status, error = page.locator("#status"), page.locator("#error")

    # Create: type a JSON object, press Create, see it in the list.
    page.fill("#json-input", '{"name": "Grace", "languages": ["COBOL", "FLOW-MATIC"]}')
    page.click("#create-btn")
    expect(status).to_have_text("Created record 1.")
    first = page.locator('#records tr[data-id="1"]')
    expect(first.locator("td").first).to_have_text("1")
    expect(first.locator("td.data")).to_have_text('{"name":"Grace","languages":["COBOL","FLOW-MATIC"]}')
    expect(page.locator("#empty")).to_be_hidden()
    expect(error).to_be_hidden()
    assert records(example_url) == [{"id": 1, "data": {"name": "Grace", "languages": ["COBOL", "FLOW-MATIC"]}}]

    page.fill("#json-input", '{"name": "Ada"}')
    page.click("#create-btn")
    expect(status).to_have_text("Created record 2.")
    expect(page.locator("#records tr")).to_have_count(2)
    assert row_ids(page) == ["1", "2"]

    # Edit: the record's JSON comes into the textarea; change it and save.
    first.get_by_role("button", name="Edit").click()
    expect(page.locator("#editor-label")).to_have_text("Editing record 1")
    expect(page.locator("#save-btn")).to_be_visible()
    expect(page.locator("#create-btn")).to_be_hidden()
    assert json.loads(page.input_value("#json-input")) == {"name": "Grace", "languages": ["COBOL", "FLOW-MATIC"]}
    page.fill("#json-input", '{"name": "Grace Hopper", "rank": "Rear Admiral"}')
    page.click("#save-btn")
    expect(status).to_have_text("Saved record 1.")
    expect(first.locator("td.data")).to_have_text('{"name":"Grace Hopper","rank":"Rear Admiral"}')
    expect(page.locator("#create-btn")).to_be_visible()
    expect(page.locator("#save-btn")).to_be_hidden()
    expect(page.locator("#editor-label")).to_have_text("New record (a JSON object)")
    expect(page.locator("#json-input")).to_have_value('{"name": "Ada"}')  # the draft, as before Edit
    assert records(example_url)[0] == {"id": 1, "data": {"name": "Grace Hopper", "rank": "Rear Admiral"}}

    # Delete: confirmed, the row goes, and so does the record.
    first.get_by_role("button", name="Delete").click()
    expect(status).to_have_text("Deleted record 1.")
    assert confirmations == ["Delete record 1?"]
    expect(first).to_have_count(0)
    assert row_ids(page) == ["2"]
    assert requests.get(example_url + "/data/1", timeout=TIMEOUT).status_code == 404

    # What the page shows is what the server has: a reload lists the same.
    page.reload()
    expect(page.locator('#records tr[data-id="2"] td.data')).to_have_text('{"name":"Ada"}')
    assert row_ids(page) == ["2"]
    expect(error).to_be_hidden()


def test_a_delete_that_is_not_confirmed_deletes_nothing(page, example_url):
    create(example_url, {"keep": "me"})
    confirmations = answer_dialogs(page, accept=False)
    deletes = requests_to(page, "DELETE")
    page.goto(example_url + "/")
    row = page.locator('#records tr[data-id="1"]')
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Delete").click()
    assert confirmations == ["Delete record 1?"]  # answered (dismissed) before click() returns
    expect(page.locator("#status")).to_have_text("")
    # A DELETE would have been sent before anything the page does next, such as reloading.
    page.reload()
    expect(row).to_have_count(1)
    assert deletes == []
    assert records(example_url) == [{"id": 1, "data": {"keep": "me"}}]


def test_malformed_json_shows_the_servers_400(page, example_url):
    page.goto(example_url + "/")
    expect(page.locator("#empty")).to_be_visible()
    error, status = page.locator("#error"), page.locator("#status")

    page.fill("#json-input", '{"name": ')
    page.click("#create-btn")
    expect(error).to_be_visible()
    expect(error).to_have_text(re.compile(r"^400: invalid JSON"))
    expect(status).to_have_text("")
    assert records(example_url) == []

    page.fill("#json-input", "[1, 2]")
    page.click("#create-btn")
    expect(error).to_have_text("400: the body must be a JSON object")
    assert records(example_url) == []

    # A good one clears the error.
    page.fill("#json-input", '{"ok": true}')
    page.click("#create-btn")
    expect(status).to_have_text("Created record 1.")
    expect(error).to_be_hidden()

    # Malformed while editing: the 400 is shown, the editor stays open, the record is unchanged.
    page.locator('#records tr[data-id="1"]').get_by_role("button", name="Edit").click()
    page.fill("#json-input", '{"ok": tru')
    page.click("#save-btn")
    expect(error).to_have_text(re.compile(r"^400: invalid JSON"))
    expect(page.locator("#editor-label")).to_have_text("Editing record 1")
    expect(page.locator("#save-btn")).to_be_visible()
    assert records(example_url) == [{"id": 1, "data": {"ok": True}}]

    page.click("#cancel-btn")
    expect(page.locator("#create-btn")).to_be_visible()
    expect(page.locator("#save-btn")).to_be_hidden()
    expect(error).to_be_hidden()
    expect(page.locator("#json-input")).to_have_value('{"ok": true}')  # the draft before Edit
    expect(page.locator('#records tr[data-id="1"] td.data')).to_have_text('{"ok":true}')

    # An error about the new record is not left standing over the editing of another.
    page.fill("#json-input", "{oops")
    page.click("#create-btn")
    expect(error).to_have_text(re.compile(r"^400: "))
    page.locator('#records tr[data-id="1"]').get_by_role("button", name="Edit").click()
    expect(error).to_be_hidden()
    expect(page.locator("#editor-label")).to_have_text("Editing record 1")
    page.click("#cancel-btn")
    expect(page.locator("#json-input")).to_have_value("{oops")


@pytest.mark.parametrize("text", ["{}", "  { }\n", "", "   "])
def test_an_empty_record_is_refused_by_the_page(page, example_url, text):
    create(example_url, {"n": 1})
    posts, puts = requests_to(page, "POST"), requests_to(page, "PUT")
    page.goto(example_url + "/")
    expect(page.locator("#records tr")).to_have_count(1)
    error = page.locator("#error")

    page.fill("#json-input", text)
    page.click("#create-btn")
    expect(error).to_have_text(re.compile(r"^(A record needs at least one field|Type a record)"))
    page.locator('#records tr[data-id="1"]').get_by_role("button", name="Edit").click()
    page.fill("#json-input", text)
    page.click("#save-btn")
    expect(error).to_have_text(re.compile(r"^(A record needs at least one field|Type a record)"))
    expect(page.locator("#editor-label")).to_have_text("Editing record 1")

    # A real record goes through; requests are seen in order, so none went before it.
    page.click("#cancel-btn")
    page.fill("#json-input", '{"n": 2}')
    page.click("#create-btn")
    expect(page.locator("#status")).to_have_text("Created record 2.")
    assert (len(posts), puts) == (1, [])
    assert records(example_url) == [{"id": 1, "data": {"n": 1}}, {"id": 2, "data": {"n": 2}}]


def test_the_list_shows_every_record_page_after_page(page, example_url):
    total = 250  # the server's pages hold 100
    with requests.Session() as session:
        for n in range(total):
            create(example_url, {"n": n}, session)
    lists = requests_to(page, "GET")
    page.goto(example_url + "/")
    expect(page.locator("#records tr")).to_have_count(total)
    assert row_ids(page) == [str(n) for n in range(1, total + 1)]
    expect(page.locator('#records tr[data-id="250"] td.data')).to_have_text('{"n":249}')
    assert [url.removeprefix(example_url) for url in lists] == [
        "/data", "/data?after=100&limit=100", "/data?after=200&limit=100",
    ]


def test_records_made_elsewhere_are_listed_as_text_and_a_404_is_shown(page, example_url):
    answer_dialogs(page, accept=True)
    html = "<img src=x onerror=\"document.title='owned'\">"
    for data in ({"html": html}, {"n": 2}):
        create(example_url, data)
    page.goto(example_url + "/")
    expect(page.locator("#records tr")).to_have_count(2)
    assert row_ids(page) == ["1", "2"]
    expect(page.locator('#records tr[data-id="1"] td.data')).to_have_text(json.dumps({"html": html}, separators=(",", ":")))
    assert page.locator("#records img").count() == 0  # shown as text, never as markup
    expect(page).to_have_title("evserve records")

    # Someone else deletes record 1; deleting it here shows the server's 404.
    assert requests.delete(example_url + "/data/1", timeout=TIMEOUT).status_code == 204
    page.locator('#records tr[data-id="1"]').get_by_role("button", name="Delete").click()
    expect(page.locator("#error")).to_have_text("404: no record 1")
    expect(page.locator("#error bdi")).to_have_text("no record 1")  # the server's words, isolated


def test_a_failed_write_shows_the_list_as_the_server_has_it(page, example_url):
    answer_dialogs(page, accept=True)
    for n in range(3):
        create(example_url, {"n": n})
    page.goto(example_url + "/")
    expect(page.locator("#records tr")).to_have_count(3)
    error = page.locator("#error")

    # Elsewhere: record 1 goes, record 4 comes. Deleting 1 here fails, and the list catches up.
    assert requests.delete(example_url + "/data/1", timeout=TIMEOUT).status_code == 204
    create(example_url, {"n": 3})
    page.locator('#records tr[data-id="1"]').get_by_role("button", name="Delete").click()
    expect(error).to_have_text("404: no record 1")
    expect(page.locator('#records tr[data-id="4"]')).to_have_count(1)
    assert row_ids(page) == ["2", "3", "4"]

    # Saving a record someone else deleted: the 404 stays shown, and the row goes.
    page.locator('#records tr[data-id="2"]').get_by_role("button", name="Edit").click()
    assert requests.delete(example_url + "/data/2", timeout=TIMEOUT).status_code == 204
    page.fill("#json-input", '{"n": "edited"}')
    page.click("#save-btn")
    expect(error).to_have_text("404: no record 2")
    expect(page.locator('#records tr[data-id="2"]')).to_have_count(0)
    assert row_ids(page) == ["3", "4"]
    page.click("#cancel-btn")

    # A refused create refreshes the list too.
    create(example_url, {"n": 5})
    page.fill("#json-input", "{oops")
    page.click("#create-btn")
    expect(error).to_have_text(re.compile(r"^400: invalid JSON"))
    expect(page.locator('#records tr[data-id="5"]')).to_have_count(1)
    assert row_ids(page) == ["3", "4", "5"]


# Where each marker's text starts on screen (its first occurrence in the cell).
POSITIONS = """(cell, markers) => {
  const found = {};
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const marker of markers) {
      const at = node.data.indexOf(marker);
      if (at >= 0 && !(marker in found)) {
        const range = document.createRange();
        range.setStart(node, at);
        range.setEnd(node, at + marker.length);
        found[marker] = range.getBoundingClientRect().left;
      }
    }
  }
  return found;
}"""


def test_right_to_left_text_stays_inside_its_own_string(page, example_url):
    override = {"first": "\u202eABC", "second": "after"}  # RIGHT-TO-LEFT OVERRIDE, never closed
    hebrew = {"list": ["\u05e9\u05dc\u05d5\u05dd", 42]}  # a number after RTL text joins it without isolation
    for data in (override, hebrew):
        create(example_url, data)
    page.goto(example_url + "/")
    expect(page.locator("#records tr")).to_have_count(2)

    cell = page.locator('#records tr[data-id="1"] td.data')
    expect(cell).to_have_text(json.dumps(override, ensure_ascii=False, separators=(",", ":")))
    at = cell.evaluate(POSITIONS, ["first", "ABC", "second", "after", "}"])
    assert at["first"] < at["ABC"] < at["second"] < at["after"] < at["}"], at

    cell = page.locator('#records tr[data-id="2"] td.data')
    expect(cell).to_have_text(json.dumps(hebrew, ensure_ascii=False, separators=(",", ":")))
    at = cell.evaluate(POSITIONS, ["list", "\u05e9", "42", "]"])
    assert at["list"] < at["\u05e9"] < at["42"] < at["]"], at


ELSEWHERE = """<!DOCTYPE html>
<title>elsewhere</title>
<form id="plain" method="post" enctype="text/plain" action="{target}/data">
  <input name='{{"forged": "' value='form"}}'>
</form>
<form id="urlencoded" method="post" action="{target}/data"><input name="forged" value="form"></form>
"""

# What a script on another origin's page tries against the example.
FORGE = """async (target) => {
  const outcome = async (request) => {
    try {
      const response = await request;
      return response.type === "opaque" ? "sent blind" : `read ${response.status}`;
    } catch {
      return "blocked";
    }
  };
  const json = { "Content-Type": "application/json" };
  return {
    read: await outcome(fetch(target + "/data")),
    delete: await outcome(fetch(target + "/data/1", { method: "DELETE" })),
    put: await outcome(fetch(target + "/data/1", { method: "PUT", headers: json, body: '{"forged": 1}' })),
    post: await outcome(fetch(target + "/data", { method: "POST", headers: json, body: '{"forged": 2}' })),
    blind: await outcome(fetch(target + "/data", {
      method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: '{"forged": 3}',
    })),
  };
}"""


@pytest.fixture
def elsewhere_url(example_url: str) -> Iterator[str]:
    """A page of another origin (another port) that tries to use the example."""
    other = App()
    other.get("/", lambda req, res: res.send(ELSEWHERE.format(target=example_url)))
    with other.run_in_thread() as server:
        yield server.url


def test_a_page_of_another_origin_can_neither_read_nor_write(page, example_url, elsewhere_url):
    create(example_url, {"mine": True})
    page.goto(elsewhere_url + "/")
    expect(page).to_have_title("elsewhere")
    outcome = page.evaluate(FORGE, example_url)
    assert outcome == {"read": "blocked", "delete": "blocked", "put": "blocked", "post": "blocked",
                       "blind": "sent blind"}, outcome

    for form in ("plain", "urlencoded"):
        page.goto(elsewhere_url + "/")
        with page.expect_navigation() as navigation:
            page.evaluate("form => document.getElementById(form).submit()", form)
        assert navigation.value.status in (403, 415), navigation.value.status

    assert records(example_url) == [{"id": 1, "data": {"mine": True}}]

"""The HA status page (docs/status-page.md) in a real browser: Debian's headless Chromium driven by
Selenium through Debian's chromedriver, against real 3-node clusters of ``mgha`` daemons. Each
test signs in with the node's token as an administrator would, checks what the page shows and
does, saves a screenshot under ``target/ui-screenshots/``, and fails on any JavaScript error in
the browser's console. axe-core (from npm, injected into the page) checks accessibility. The
arbiter's view runs against a real etcd (Debian's etcd-server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from mgha.testing import free_ports, wait_for
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import REPO, changes, group, host

CHROMIUM = os.environ.get("MGHA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MGHA_CHROMEDRIVER", "/usr/bin/chromedriver")
#: axe-core's bundle, which scripts/test installs with npm.
AXE_JS = Path(os.environ.get("MGHA_AXE_JS") or REPO / "target" / "axe" / "node_modules" / "axe-core" / "axe.min.js")
SCREENSHOTS = REPO / "target" / "ui-screenshots"
#: How long the page may take to show what the cluster did (the stream samples every 500 ms).
SHOW_S = 10.0


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own profile dir), closed after the test, which leaves a
    screenshot named after the test whether it passed or not."""
    profile = tempfile.mkdtemp(prefix="mgha-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1200", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        try:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(SCREENSHOTS / f"{request.node.name}.png"))
        finally:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)


def sign_in(driver: WebDriver, node: Any) -> None:
    """Opens the node's page and signs in with its admin token, as in docs/status-page.md."""
    driver.get(f"http://127.0.0.1:{node.admin_port}/ui/")
    token = (node.dir / "admin.token").read_text().strip()
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    until(driver, lambda: rows(driver).get(node.name), "the page to show the cluster")


def until(driver: WebDriver, check: Callable[[], Any], what: str, timeout: float = SHOW_S) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda _: check())
    except Exception as e:  # noqa: BLE001 - name what did not happen
        raise AssertionError(f"the page did not show {what} within {timeout} s; it shows:\n{page_text(driver)}") from e


def page_text(driver: WebDriver) -> str:
    return driver.execute_script("return document.body.innerText")


def rows(driver: WebDriver) -> Dict[str, Dict[str, str]]:
    """The server table as the page shows it: name -> role, sync status and the row's text."""
    return driver.execute_script(
        """const out = {};
        for (const tr of document.querySelectorAll('#servers tbody tr[data-server]')) {
          out[tr.dataset.server] = {role: tr.dataset.role, status: tr.dataset.status || '', text: tr.innerText};
        }
        return out;"""
    )


def confirm(driver: WebDriver, expect: str) -> str:
    """Confirms the open dialog after checking it says ``expect``; returns its text."""
    dialog = driver.find_element(By.ID, "confirm")
    until(driver, dialog.is_displayed, "the confirmation")
    text = dialog.text
    assert expect in text, text
    driver.find_element(By.ID, "confirm-yes").click()
    return text


def js_errors(driver: WebDriver, refused: List[str] = ()) -> List[Dict[str, Any]]:
    """SEVERE console entries, except the network log of requests the test expects refused
    (paths in ``refused``)."""
    out = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        if entry.get("source") == "network" and any(p in entry["message"] for p in refused):
            continue
        out.append(entry)
    return out


def axe_violations(driver: WebDriver) -> List[Dict[str, Any]]:
    """Serious and critical accessibility violations axe-core finds in the page as it is."""
    if not AXE_JS.is_file():
        pytest.fail(f"axe-core is not installed at {AXE_JS}: scripts/test installs it with npm")
    driver.execute_script(AXE_JS.read_text())
    driver.set_script_timeout(60)
    found = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']})
          .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                  nodes: v.nodes.map(n => n.target.join(' '))}))))
          .catch(e => done([{id: 'axe-failed', impact: 'critical', help: String(e), nodes: []}]));"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def mgha_status(node: Any) -> Dict[str, Any]:
    """``mgha status --json`` of ``node``, as an administrator would run it."""
    out = subprocess.run([str(node.binary), "status", "--data-dir", str(node.dir), "--json"],
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return json.loads(out.stdout)


def test_the_page_lists_every_server_with_its_role_and_passes_axe(cluster, browser):
    c = cluster(3, "daemons")
    c["a"].publish(changes(host("web1", "10.0.0.1"), message="first host"))
    c.wait_synced()
    browser.get(f"http://127.0.0.1:{c['a'].admin_port}/ui/")
    until(browser, lambda: browser.find_element(By.ID, "token").is_displayed(), "the sign-in form")
    violations = axe_violations(browser)
    assert violations == [], f"sign-in form: {json.dumps(violations, indent=1)}"
    sign_in(browser, c["a"])
    seen = until(browser, lambda: (r := rows(browser)) and all(
        r.get(n, {}).get("status") == "synchronized" for n in "bc") and r, "b and c synchronized")
    assert {n: r["role"] for n, r in seen.items()} == {"a": "active", "b": "standby", "c": "standby"}
    assert "this node" in seen["a"]["text"] and "active" in seen["a"]["text"]
    # Colour and text: every status badge says what it means.
    assert "synchronized" in seen["b"]["text"] and "standby" in seen["c"]["text"]
    for chart in ("chart-lag-b", "chart-lag-c", "chart-publishes"):
        until(browser, lambda: browser.find_elements(By.ID, chart), f"the chart {chart}")
    until(browser, lambda: "first host" in browser.find_element(By.ID, "revisions").text, "the revision list")
    # The global domain alone: the Domains panel says so instead of a one-row table.
    until(browser, lambda: "One domain" in browser.find_element(By.ID, "domains-hint").text, "one domain")
    assert not browser.find_element(By.ID, "domains").is_displayed()
    violations = axe_violations(browser)
    assert violations == [], json.dumps(violations, indent=1)
    assert js_errors(browser) == []


def domains(driver: WebDriver) -> Dict[str, Dict[str, str]]:
    """The domain table as the page shows it, in its order: name -> role of this server's
    replica, head, objects, the server whose replica is Active, and the row's text."""
    found = driver.execute_script(
        """return Array.from(document.querySelectorAll('#domains tbody tr[data-domain]'), (tr) => [
          tr.dataset.domain,
          {role: tr.dataset.role, head: tr.dataset.head, objects: tr.dataset.objects,
           active: tr.dataset.active, text: tr.innerText}]);"""
    )
    return dict((name, row) for name, row in found)


def test_the_domains_panel_lists_each_domain_live_and_shows_its_revisions(cluster, browser):
    c = cluster(1, "daemons")
    a = c["a"]
    a.publish(changes(host("g-dns", "10.0.0.53"), message="a global resolver"))
    for name in ("red", "blue"):
        created = a.request("POST", "/v1/domains", {"name": name, "on": ["a"]})
        assert created["role"] == "active", created
    red_seq = a.request(
        "POST", "/v1/domains/red/publish",
        changes(host("web1", "10.0.1.1"), host("web2", "10.0.1.2"), group("resolvers", ["g-dns"]),
                message="red's first hosts"),
        author="ui-test",
    )["seq"]  # fmt: skip
    assert red_seq == 1
    listed = {d["name"]: d for d in a.request("GET", "/v1/domains")["domains"]}
    global_head, global_objects = listed["global"]["head_seq"], listed["global"]["objects"]

    sign_in(browser, a)
    seen = until(browser, lambda: (d := domains(browser)) and len(d) == 3 and d, "the three domains")
    assert list(seen) == ["global", "blue", "red"], seen
    assert {n: d["role"] for n, d in seen.items()} == {"global": "active", "blue": "active", "red": "active"}
    assert {n: d["active"] for n, d in seen.items()} == {"global": "a", "blue": "a", "red": "a"}
    assert (seen["red"]["head"], seen["red"]["objects"]) == ("1", "3")
    assert (seen["blue"]["head"], seen["blue"]["objects"]) == ("0", "0")
    assert seen["red"]["text"].rstrip().endswith("none"), "red has no other replica"
    assert (seen["global"]["head"], seen["global"]["objects"]) == (str(global_head), str(global_objects))
    assert "3 domains" in browser.find_element(By.ID, "domains-hint").text

    # A publish into red shows on the page without a reload; the other domains stay as they were.
    a.request("POST", "/v1/domains/red/publish", changes(host("web3", "10.0.1.3"), message="red grows"),
              author="ui-test")  # fmt: skip
    until(browser, lambda: (d := domains(browser)["red"]) and (d["head"], d["objects"]) == ("2", "4"), "red's new head")
    assert domains(browser)["blue"]["objects"] == "0"
    assert domains(browser)["global"]["head"] == str(global_head)

    # Selecting red lists its revisions (not the global domain's), newest first.
    browser.find_element(By.CSS_SELECTOR, "#domains tr[data-domain='red'] button").click()
    until(browser, lambda: browser.find_element(By.ID, "domain-detail").is_displayed(), "red's details")
    listed = until(browser, lambda: [r.get_attribute("data-seq") for r in
                                     browser.find_elements(By.CSS_SELECTOR, "#domain-revisions tr[data-seq]")],
                   "red's revisions")  # fmt: skip
    assert listed == ["2", "1"], listed
    text = browser.find_element(By.ID, "domain-revisions").text
    assert "red grows" in text and "red's first hosts" in text and "a global resolver" not in text, text
    # Its diff names the global object red's group references.
    browser.find_element(By.CSS_SELECTOR, "#domain-revisions tr[data-seq='1'] button").click()
    item = until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#domain-diff li[data-object='group/resolvers']"),
                 "the diff of red's group")[0]  # fmt: skip
    assert "host g-dns" in item.text, item.text
    # One server holds every replica of red: no changeover is offered, and the page says why.
    assert not browser.find_element(By.ID, "domain-planned-form").is_displayed()
    assert "No other replica of red" in browser.find_element(By.ID, "domain-planned-hint").text
    violations = axe_violations(browser)
    assert violations == [], json.dumps(violations, indent=1)

    # Selecting blue shows its (empty) history instead.
    browser.find_element(By.CSS_SELECTOR, "#domains tr[data-domain='blue'] button").click()
    until(browser, lambda: "No revisions yet" in browser.find_element(By.ID, "domain-revisions").text,
          "blue's empty history")  # fmt: skip
    assert browser.find_element(By.ID, "domain-detail-title").text == "Domain blue"
    # Deleted while selected: its row and its details go.
    a.request("DELETE", "/v1/domains/blue")
    until(browser, lambda: list(domains(browser)) == ["global", "red"], "blue deleted")
    until(browser, lambda: not browser.find_element(By.ID, "domain-detail").is_displayed(), "blue's details gone")
    assert js_errors(browser) == []


def test_a_standby_replica_of_a_domain_offers_its_changeover_and_the_page_shows_the_outcome(cluster, browser):
    c = cluster(2, "daemons", changeover_timeout_ms=1500)
    a, b = c["a"], c["b"]
    a.request("POST", "/v1/domains", {"name": "red", "on": ["a", "b"]})
    # The registry reaches b with the global domain; b opens its replica of red as a Standby.
    c.wait_for(lambda: {d["name"]: d for d in b.request("GET", "/v1/domains")["domains"]}
               .get("red", {}).get("role") == "standby", what="b's replica of red")  # fmt: skip

    sign_in(browser, b)
    row = until(browser, lambda: domains(browser).get("red"), "red")
    assert row["role"] == "standby" and "a, b" in row["text"], row
    # Its other replica is listed, with its sync status once b's replica has heard of it.
    assert browser.find_elements(By.CSS_SELECTOR, "#domains tr[data-domain='red'] li[data-peer='a']")
    assert not browser.find_elements(By.CSS_SELECTOR, "#domains tr[data-domain='red'] li[data-peer='b']")
    browser.find_element(By.CSS_SELECTOR, "#domains tr[data-domain='red'] button").click()
    form = browser.find_element(By.ID, "domain-planned-form")
    until(browser, form.is_displayed, "red's changeover")
    options = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "domain-planned-target")).options]
    assert options == ["b"], "a Standby replica offers to take the role itself"
    browser.find_element(By.ID, "domain-planned").click()
    until(browser, browser.find_element(By.ID, "confirm").is_displayed, "the confirmation")
    violations = axe_violations(browser)
    assert violations == [], f"confirmation: {json.dumps(violations, indent=1)}"
    text = confirm(browser, "Planned changeover of red to b")
    assert "Other domains are not touched" in text, text
    # Whatever the outcome, the page reports what the API did: done and b is red's Active, or
    # the API's refusal as it came and nothing changed.
    outcome = until(browser, lambda: browser.find_element(By.ID, "domain-action-result").text.startswith("Done")
                    or browser.find_element(By.ID, "domain-action-error").text, "the changeover's outcome",
                    timeout=30)  # fmt: skip
    red = {d["name"]: d for d in b.request("GET", "/v1/domains")["domains"]}["red"]
    if outcome is True:
        assert "b is the Active of red" in browser.find_element(By.ID, "domain-action-result").text
        assert red["role"] == "active", red
    else:
        assert "No changeover of red to b" in outcome and ": " in outcome, outcome
        assert red["role"] == "standby", red
    assert mgha_status(a)["node"]["role"] == "active", "a changeover of red leaves the global domain alone"
    assert js_errors(browser, refused=["/changeover"]) == []


def flip_everywhere(store: Path, needle: bytes) -> None:
    """Flips the last byte of every copy of ``needle`` in the stopped node's store file: the
    object and the revision that wrote it are damaged, as a bad disk would leave them."""
    data = bytearray(store.read_bytes())
    places = []
    at = data.find(needle)
    while at != -1:
        places.append(at)
        at = data.find(needle, at + 1)
    assert places, f"{needle!r} is not in {store}"
    for at in places:
        data[at + len(needle) - 1] ^= 0x01
    store.write_bytes(bytes(data))


def test_a_damaged_active_shows_its_damage_and_the_changeover_that_heals_it(cluster, browser):
    c = cluster(2, "daemons")
    a = c["a"]
    a.publish(changes(host("mark", "10.77.66.55")))
    # A later revision keeps the damage out of the head's records, which every start checks.
    a.publish(changes(host("later", "10.0.0.2")))
    c.wait_synced()
    a.kill(signal.SIGTERM)
    flip_everywhere(a.dir / "mgha.redb", b"10.77.66.55")
    a.start()
    # The scrub's first pass, at start, finds the damage; the page shows it and the next step
    # the node library names (a synchronized Standby to change over to, without failover).
    sign_in(browser, a)
    health = browser.find_element(By.ID, "health")
    until(browser, health.is_displayed, "the damage")
    step = until(
        browser,
        lambda: (e := browser.find_elements(By.CSS_SELECTOR, '[data-health="recovery"][data-action="changeover"]')) and e[0],
        "the changeover to run",
    )
    assert "Store damaged" in health.text and "b" in step.text, health.text
    assert mgha_status(a)["recovery"] == {"action": "changeover", "to": "b"}
    violations = axe_violations(browser)
    assert violations == [], json.dumps(violations, indent=1)
    # The revision list reads the damaged record: the API refuses it (code `corrupt`).
    assert js_errors(browser, refused=["/v1/revisions"]) == []


def test_a_sigkilled_standby_shows_unreachable_within_2_s_and_a_refused_changeover_shows_the_api_error(
    cluster, browser
):
    c = cluster(3, "daemons", changeover_timeout_ms=1500)
    sign_in(browser, c["a"])
    until(browser, lambda: rows(browser).get("c", {}).get("status") == "synchronized", "c synchronized")
    c.kill("c")
    killed = time.monotonic()
    until(browser, lambda: rows(browser)["c"]["status"] == "unreachable", "c unreachable", timeout=2.0)
    print(f"c shown unreachable {time.monotonic() - killed:.2f} s after SIGKILL")
    assert "unreachable" in rows(browser)["c"]["text"]
    assert rows(browser)["b"]["status"] == "synchronized"

    # A changeover to the dead node is refused by the API; the page shows its error body.
    Select(browser.find_element(By.ID, "planned-target")).select_by_value("c")
    browser.find_element(By.ID, "planned").click()
    confirm(browser, "becomes the Active")
    error = until(browser, lambda: browser.find_element(By.ID, "action-error").text, "the refusal")
    assert "No changeover to c" in error and "conflict:" in error, error
    assert mgha_status(c["a"])["node"]["role"] == "active", "a refused changeover changes nothing"
    assert js_errors(browser, refused=["/v1/changeover"]) == []


def test_a_planned_changeover_clicked_on_the_page_moves_the_active(cluster, browser):
    c = cluster(3, "daemons")
    sign_in(browser, c["a"])
    until(browser, lambda: rows(browser).get("b", {}).get("status") == "synchronized", "b synchronized")
    Select(browser.find_element(By.ID, "planned-target")).select_by_value("b")
    browser.find_element(By.ID, "planned").click()
    until(browser, browser.find_element(By.ID, "confirm").is_displayed, "the confirmation")
    violations = axe_violations(browser)
    assert violations == [], f"confirmation: {json.dumps(violations, indent=1)}"
    text = confirm(browser, "Planned changeover to b")
    assert "No revision is lost" in browser.find_element(By.ID, "planned-hint").text
    assert "none is lost" in text
    result = until(browser, lambda: "Done" in (t := browser.find_element(By.ID, "action-result").text) and t,
                   "the changeover's result", timeout=30)  # fmt: skip
    assert "b is the Active" in result, result
    assert mgha_status(c["b"])["node"]["role"] == "active"
    assert mgha_status(c["a"])["node"]["role"] == "standby"
    # The page on a follows: a is a Standby now, and says whom it follows.
    until(browser, lambda: rows(browser)["a"]["role"] == "standby", "a as a standby")
    until(browser, lambda: "following b" in rows(browser)["a"]["text"], "a following b")
    assert js_errors(browser) == []


def test_a_forced_changeover_on_a_standby_warns_as_the_cli_does_and_makes_it_active(cluster, browser):
    c = cluster(3, "daemons")
    b = c["b"]
    sign_in(browser, b)
    until(browser, lambda: "following a" in rows(browser)["b"]["text"], "b following a")
    c.kill("a")
    until(browser, lambda: browser.find_element(By.ID, "forced").is_enabled(), "the forced changeover button")
    browser.find_element(By.ID, "forced").click()
    text = confirm(browser, "without asking 'a'")
    assert "collision branch" in text and "Force only when 'a' is unreachable" in text, text
    result = until(browser, lambda: "Done" in (t := browser.find_element(By.ID, "action-result").text) and t,
                   "the forced changeover's result")  # fmt: skip
    assert "b is the Active" in result and "Warning: 'a' was not asked" in result, result
    assert mgha_status(b)["node"]["role"] == "active"
    until(browser, lambda: rows(browser)["b"]["role"] == "active", "b as the active")
    assert js_errors(browser) == []


def test_a_collision_is_resolved_by_merge_from_the_page_and_its_diff_shows_names(cluster, browser):
    # As in the demo: the Primary is cut off, b is forced Active, both sides publish, then the heal.
    c = cluster(3, "daemons")
    a, b = c["a"], c["b"]
    a.publish(changes(host("h0", "10.0.0.1"), host("h1", "10.0.0.2"), group("dmz", ["h0"])))
    c.wait_synced()
    # a must not hear of b's new epoch before it publishes: a node dials its peers through their
    # proxies, so every proxy is cut (see mgha.proxy).
    for n in c:
        c.cut(n)
    b.force_changeover()
    b.publish(changes(group("dmz", ["h0", "h1"]), message="dmz gets h1"))
    a.publish(changes(host("cut-off", "10.9.9.9"), message="published while cut off"))
    c.heal()
    c.wait_for(lambda: b.collisions(), what="b to keep a's branch")
    c.wait_for(lambda: a.role() == "standby", 15, "a to step down")

    sign_in(browser, b)
    branch = until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "li[data-branch][data-status=open]"),
                   "the open branch")[0]  # fmt: skip
    branch.find_element(By.XPATH, ".//button[text()='Show diff']").click()
    diff = until(browser, lambda: branch.find_elements(By.CSS_SELECTOR, ".collision-diff"), "the branch's diff")[0]
    until(browser, lambda: "cut-off" in diff.text, "the branch's host")
    active_side = diff.find_element(By.CSS_SELECTOR, "li[data-object='group/dmz']").text
    assert "host h1" in active_side, active_side
    uids = {o["uid"] for o in b.list("host")}
    assert not any(u in diff.text for u in uids), "references are shown by name, not uid"
    violations = axe_violations(browser)
    assert violations == [], json.dumps(violations, indent=1)

    branch.find_element(By.XPATH, ".//button[text()='Merge']").click()
    confirm(browser, "combines the 1 revision of branch")
    result = until(browser, lambda: "resolved" in (t := browser.find_element(By.ID, "action-result").text) and t,
                   "the merge's result")  # fmt: skip
    assert "merged" in result and "published" in result, result
    assert b.collisions()[0]["status"] == "resolved"
    c.wait_synced()
    for node in (a, b, c["c"]):
        assert node.get("host", "cut-off")["name"] == "cut-off"
        assert len(node.get("group", "dmz")["fields"]["members"]) == 2
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "li[data-branch][data-status=resolved]"),
          "the branch resolved")
    assert js_errors(browser) == []


def test_the_revision_diff_shows_referenced_objects_by_name(cluster, browser):
    c = cluster(3, "daemons")
    a = c["a"]
    a.publish(changes(host("web1", "10.0.0.1"), host("web2", "10.0.0.2"), message="two hosts"))
    seq = a.publish(changes(group("web", ["web1", "web2"]), message="web tier"))
    sign_in(browser, a)
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, f"#revisions tr[data-seq='{seq}']"), "revision")
    browser.find_element(By.CSS_SELECTOR, f"#revisions tr[data-seq='{seq}'] button").click()
    item = until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#diff li[data-object='group/web']"),
                 "the diff of the web group")[0]  # fmt: skip
    text = item.text
    assert "host web1" in text and "host web2" in text, text
    for o in a.list("host"):
        assert o["uid"] not in text, "a reference shown as a uid"
    # Any revision against another: from the empty state to the head, through the form.
    browser.find_element(By.ID, "diff-from").clear()
    browser.find_element(By.ID, "diff-from").send_keys("0")
    browser.find_element(By.ID, "diff-show").click()
    until(browser, lambda: "Diff from revision 0" in browser.find_element(By.ID, "diff").text, "the diff from 0")
    objects = {e.get_attribute("data-object") for e in browser.find_elements(By.CSS_SELECTOR, "#diff li[data-object]")}
    assert objects == {"host/web1", "host/web2", "group/web"}
    assert js_errors(browser) == []


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[str]:
    """A one-member etcd on free loopback ports (Debian's etcd-server, which scripts/test
    installs); yields its client URL and is killed after the test."""
    client, peer = (f"http://127.0.0.1:{p}" for p in free_ports(2))
    log = open(tmp_path / "etcd.log", "wb")
    proc = subprocess.Popen(
        ["etcd", "--name", "ui", "--data-dir", str(tmp_path / "etcd"),
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"ui={peer}", "--initial-cluster-state", "new"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: urllib.request.urlopen(f"{client}/health", timeout=1).status == 200, 30, "etcd to start")
        yield client
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_the_arbiter_of_automatic_failover_is_shown_with_its_quorum_and_holder(cluster, browser, etcd):
    c = cluster(3, "daemons", failover="etcd", etcd_endpoints=[etcd])
    sign_in(browser, c["a"])
    box = until(browser, lambda: (b := browser.find_element(By.ID, "arbiter")).is_displayed() and b, "the arbiter")
    until(browser, lambda: "✓ held" in box.text, "the quorum held")
    text = box.text
    assert "etcd" in text, text
    assert "Holder\na, epoch" in text, text
    violations = axe_violations(browser)
    assert violations == [], json.dumps(violations, indent=1)
    assert js_errors(browser) == []

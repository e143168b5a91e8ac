"""The web console in a real browser: Debian's chromium driven by Playwright.

A person opens the console of one node of three, sees the whole cluster with its
leader, follows "Mailboxes" to the approval mailbox, watches an agent's request
arrive, clicks Approve; an agent's nats-py subscription on the reply mailbox gets the
answer, and the request is consumed. Skipped, with the reason, only where no
chromium can be had (`.ci/run` installs it: `apt-get install -y chromium`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.error
import urllib.request

import pytest

from tests.mq9 import collect, connect, create, list_ids, send
from tests.nodes import wait_for
from tests.test_monitor import _healthy, monitor_url, start_all, with_monitor

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed (apt-get install -y chromium)")


async def test_a_person_approves_an_agents_request_in_the_console(make_cluster, tmp_path):
    from playwright.async_api import async_playwright, expect

    shots = os.environ.get("MQ9_CONSOLE_SHOTS") or str(tmp_path)  # docs/img is made with MQ9_CONSOLE_SHOTS=docs/img

    nodes = with_monitor(make_cluster(3, start=False))
    start_all(nodes)
    await wait_for(_healthy(nodes), 20, "all three nodes healthy")
    agent = await connect(nodes[0], name="agent-1")
    try:
        await create(agent, name="approvals", public=True, desc="requests for a human", ttl=600)
        await create(agent, name="answers.agent-1", ttl=600)
        answers = await agent.subscribe("$mq9.AI.MAILBOX.MSG.answers.agent-1.*")

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1100, "height": 760})
            dialogs: list[str] = []

            async def accept(dialog) -> None:
                dialogs.append(dialog.message)
                await dialog.accept()
            page.on("dialog", accept)
            console = nodes[1]  # any node's console shows the whole cluster
            await page.goto(monitor_url(console) + "/")

            await expect(page.locator("#leader-name")).not_to_have_text("none", timeout=15000)
            await expect(page.locator("#nodes tbody tr")).to_have_count(3, timeout=15000)
            await expect(page.locator("#nodes tbody")).to_contain_text("leader")
            for node in nodes:
                await expect(page.locator("#nodes tbody")).to_contain_text(node.name)
            await page.screenshot(path=os.path.join(shots, "console-cluster.png"))

            await page.get_by_role("link", name="Mailboxes").first.focus()  # from the keyboard
            await page.keyboard.press("Enter")
            await expect(page.locator("h1")).to_have_text("Mailboxes")
            await page.get_by_label("Search mailboxes by name").fill("approv")
            link = page.get_by_role("link", name="approvals", exact=True)
            await expect(link).to_be_visible(timeout=10000)
            await page.screenshot(path=os.path.join(shots, "console-mailboxes.png"))
            await link.click()
            await expect(page.locator("h1")).to_contain_text("approvals")
            await expect(page.locator("#live")).to_have_text("(live)", timeout=10000)

            request = {"reply_to": "answers.agent-1", "action": "deploy v2 to production", "agent": "agent-1"}
            sent = await send(agent, "approvals", json.dumps(request).encode(), priority="urgent")
            card = page.locator(f'article[data-msg-id="{sent["msg_id"]}"]')
            await expect(card).to_contain_text("deploy v2 to production", timeout=10000)
            await page.screenshot(path=os.path.join(shots, "console-approval.png"))

            await page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
            await expect(card.get_by_role("button", name="Approve")).to_be_visible()
            assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            await page.screenshot(path=os.path.join(shots, "console-phone.png"))
            await card.get_by_role("button", name="Approve").click()
            await expect(card).to_contain_text("Approved: answer sent", timeout=10000)
            await browser.close()

        assert dialogs == [f"Approve request {sent['msg_id']}?"]
        got = await collect(answers, 1, timeout=10)
        assert json.loads(got[0].data) == {"approved": True, "reviewer": "console", "msg_id": sent["msg_id"]}
        await wait_for(lambda: _consumed(agent, sent["msg_id"]), 10, "the request to leave the approvals mailbox")
    finally:
        await agent.close()


async def _consumed(nc, msg_id: str) -> bool:
    return msg_id not in await list_ids(nc, "approvals")


async def test_answers_are_refused_without_json_or_with_a_foreign_ack(make_node):
    node = make_node("c1")
    with_monitor([node])
    node.start()
    def post(body: bytes, kind: str) -> tuple[int, dict]:
        req = urllib.request.Request(monitor_url(node) + "/console/api/answer", data=body, method="POST",
                                     headers={"Content-Type": kind})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    form = await asyncio.to_thread(post, b"mail_id=a&approved=true", "application/x-www-form-urlencoded")
    assert form[0] == 415 and form[1]["code"] == 415
    foreign = {"mail_id": "a", "msg_id": "1", "ack": "$mq9.AI.ACK.1._.other", "reply_to": "b", "approved": True}
    status, body = await asyncio.to_thread(post, json.dumps(foreign).encode(), "application/json")
    assert status == 400 and "acknowledgement subject" in body["error"]
    bad = dict(foreign, ack="$mq9.AI.ACK.1._.a", approved="yes")
    status, body = await asyncio.to_thread(post, json.dumps(bad).encode(), "application/json")
    assert status == 400 and "true or false" in body["error"]


async def test_with_auth_on_the_console_asks_for_credentials_and_acts_as_that_user(make_node, tmp_path):
    from playwright.async_api import async_playwright, expect

    node = make_node("secure", extra=["--user", "alice", "--pass", "alice-secret"])
    with_monitor([node])
    node.start()
    agent = await connect(node, user="alice", password="alice-secret")
    try:
        await create(agent, name="approvals", ttl=600)
        await create(agent, name="answers.a", ttl=600)
        answers = await agent.subscribe("$mq9.AI.MAILBOX.MSG.answers.a.*")
        sent = await send(agent, "approvals", json.dumps({"reply_to": "answers.a", "action": "rotate keys"}).encode())
        refused = await asyncio.to_thread(_get_status, monitor_url(node) + "/console/api/mailbox/approvals/stream")
        assert refused == 401  # no session, no mailbox
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page()
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await page.goto(monitor_url(node) + "/#/mailbox/approvals")
            await expect(page.locator("h1")).to_have_text("Log in")
            await page.get_by_label("User").fill("alice")
            await page.get_by_label("Password or token").fill("wrong")
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator("#login-error")).to_contain_text("login refused")
            await page.get_by_label("Password or token").fill("alice-secret")
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator("#who")).to_contain_text("signed in as alice")
            card = page.locator(f'article[data-msg-id="{sent["msg_id"]}"]')
            await expect(card).to_contain_text("rotate keys", timeout=10000)
            await card.get_by_role("button", name="Reject").click()
            await expect(card).to_contain_text("Rejected: answer sent", timeout=10000)
            await browser.close()
        got = await collect(answers, 1, timeout=10)
        assert json.loads(got[0].data) == {"approved": False, "reviewer": "alice", "msg_id": sent["msg_id"]}
    finally:
        await agent.close()


def _get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code

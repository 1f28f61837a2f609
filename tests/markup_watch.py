"""Watching a grader's page in Chromium for student markup that runs or calls out.

Every payload of ``hostile.hostile_markup`` aims at a loopback listener (a real HTTP server
here) and, if it runs, pushes its name to ``window.__tdkit_pwned``. A page is inert when, once
it has loaded and the network is idle, no payload's marker is set, the listener got nothing,
the browser requested nothing but the page's own addresses, and no dialog opened.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_LISTENERS: list[Listener] = []
BLOCKED_BY_POLICY = (
    "csp"  # Playwright's failure text for a load the Content-Security-Policy stopped
)


class Listener:
    """A loopback HTTP server that records the path of every request it receives."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Record(BaseHTTPRequestHandler):
            def _record(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(204)
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_OPTIONS = _record

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Record)
        threading.Thread(
            target=self.server.serve_forever, daemon=True, name="payload-listener"
        ).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def payload_listener() -> Listener:
    """The session's listener (one for every graded course and page of a test run)."""
    if not _LISTENERS:
        _LISTENERS.append(Listener())
    return _LISTENERS[0]


@dataclass
class Watch:
    requests: list[Any] = field(
        default_factory=list
    )  # Playwright requests, their outcome read at the end
    dialogs: list[str] = field(default_factory=list)

    def made(self) -> list[str]:
        """URLs the browser asked for (a load the Content-Security-Policy blocked never left it)."""
        return [r.url for r in self.requests if r.failure != BLOCKED_BY_POLICY]

    def blocked(self) -> list[str]:
        return [r.url for r in self.requests if r.failure == BLOCKED_BY_POLICY]


def watch(page: Any) -> Watch:
    """Record every request the page (and its frames) makes and every dialog it opens."""
    seen = Watch()
    page.on("request", lambda request: seen.requests.append(request))
    page.on("dialog", lambda dialog: (seen.dialogs.append(dialog.message), dialog.dismiss()))
    return seen


def assert_inert(page: Any, seen: Watch, allowed: tuple[str, ...], what: str) -> None:
    """Nothing of the student's ran or called out on this page."""
    page.wait_for_load_state("networkidle")
    markers = [
        frame.evaluate("() => window.__tdkit_pwned || null")
        for frame in page.frames
        if not frame.is_detached()
    ]
    assert [m for m in markers if m] == [], f"{what}: student scripts ran: {markers}"
    listener = payload_listener()
    assert listener.hits == [], f"{what}: the payload listener was called: {listener.hits}"
    foreign = [url[:120] for url in seen.made() if not url.startswith(allowed)]
    assert foreign == [], f"{what}: requests beyond the page's own: {foreign}"
    assert seen.dialogs == [], f"{what}: dialogs opened: {seen.dialogs}"


def active_markup(page: Any, container: str = "body") -> list[str]:
    """Elements under ``container`` that could run or load something by themselves (a plain web
    link, followed only when clicked, is not one): none may come from a student."""
    return page.eval_on_selector(
        container,
        """root => [...root.querySelectorAll('*')].flatMap(e => {
            const bad = [];
            const tag = e.tagName.toLowerCase();
            if (['script', 'iframe', 'object', 'embed', 'base', 'meta', 'link', 'form', 'style', 'frame'].includes(tag))
                bad.push(tag);
            for (const a of e.attributes) {
                if (a.name.startsWith('on')) bad.push(tag + '[' + a.name + ']');
                if (/^\\s*(javascript|data:text|vbscript)/i.test(a.value) && a.name !== 'alt') bad.push(tag + '[' + a.name + ']=' + a.value.slice(0, 30));
                const loads = ['src', 'poster', 'data', 'action', 'formaction'].includes(a.name) || (a.name === 'href' && tag !== 'a');
                if (loads && a.value.includes('127.0.0.1:') && !a.value.startsWith(location.origin))
                    bad.push(tag + '[' + a.name + ']=' + a.value.slice(0, 40));
            }
            return bad;
        })""",
    )


def shown_images(page: Any, container: str = "body") -> int:
    """How many images under ``container`` are decoded and shown (student pictures must stay visible)."""
    return int(
        page.eval_on_selector(
            container,
            "root => [...root.querySelectorAll('img')].filter(e => e.complete && e.naturalWidth > 0).length",
        )
    )

"""A Content-Security-Policy on formgrader's pages (layer 2 of the review path).

A Jupyter server extension, enabled by the course's ``jupyter_server_config.py``
(``jupyter server --config=jupyter_server_config.py``, docs/ta.md, "Formgrader and the reports in a browser"). Every HTML page
under ``/formgrader/`` gets a policy that allows scripts only from formgrader's own static
folder and the inline scripts and event handlers of formgrader's own template, by hash. On a
submission page, the student's notebook is rendered inside ``#notebook-container``: nothing
from there on is hashed, so a script or handler that got into the notebook never runs, even if
the autograded notebook were not sanitised. Nothing is loaded from another origin (MathJax
from its CDN included: formulas show as their LaTeX source), no frame, no object, no form to
elsewhere, no ``<base>``.

formgrader itself needs: its static scripts (jQuery, Backbone, ...), a few inline scripts (the
page's ids, name toggling, tooltips), two ``onclick`` handlers, inline styles, ``data:``
images, and XHRs to its own API: all allowed here.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from typing import Any

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import OutputTransform

STUDENT_CONTAINER = "notebook-container"  # formgrade template: the rendered notebook starts here
SCRIPT_TYPES = ("", "text/javascript", "application/javascript", "module")


class _OwnScripts(HTMLParser):
    """Inline scripts and event handlers of the page, up to the student's notebook."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self.student = False
        self._script: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.student:
            return
        values = dict(attrs)
        if values.get("id") == STUDENT_CONTAINER:
            self.student = True
            return
        self.handlers += [v for k, v in attrs if k.startswith("on") and v]
        if (
            tag == "script"
            and "src" not in values
            and (values.get("type") or "").lower() in SCRIPT_TYPES
        ):
            self._script = []

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None


def _sha256(text: str) -> str:
    return (
        "'sha256-"
        + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
        + "'"
    )


def policy(page: str | None, origin: str, base_url: str) -> str:
    """The policy for one formgrader page (``None``: the page could not be read whole, so no
    inline script at all)."""
    own = _OwnScripts()
    if page is not None:
        own.feed(page)
        own.close()
    hashes = sorted({_sha256(s) for s in own.scripts} | {_sha256(h) for h in own.handlers})
    scripts = " ".join(
        [
            f"{origin}{base_url}formgrader/static/",
            *hashes,
            *(["'unsafe-hashes'"] if own.handlers else []),
        ]
    )
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",  # formgrader's inline styles; CSS cannot run script
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-src 'none'",
            "object-src 'none'",
            "frame-ancestors 'self'",
            f"report-uri {base_url}api/security/csp-report",  # Jupyter logs each violation
        ]
    )


class FormgraderPolicy(OutputTransform):
    """Sets the policy on formgrader's HTML responses (each is written at once, then finished)."""

    base_url = "/"  # the server's, set by the subclass the extension registers

    def __init__(self, request: HTTPServerRequest) -> None:
        super().__init__(request)
        self.request = request

    def transform_first_chunk(
        self, status_code: int, headers: HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, HTTPHeaders, bytes]:
        base_url = self.base_url
        html = headers.get("Content-Type", "").startswith("text/html")
        path = self.request.path or ""
        if (
            html
            and path.startswith(f"{base_url}formgrader/")
            and not path.startswith(f"{base_url}formgrader/static/")
        ):
            # A file of the autograded folder served as is (formgrader's SubmissionFilesHandler): no template of its own.
            served_file = re.fullmatch(
                rf"{re.escape(base_url)}formgrader/submissions/[^/]+/.+", path
            )
            page = (
                chunk.decode("utf-8", errors="replace") if finishing and not served_file else None
            )
            origin = f"{self.request.protocol}://{self.request.host}"
            headers["Content-Security-Policy"] = policy(page, origin, base_url)
        return status_code, headers, chunk


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "tdkit.trusted.formgrader_csp"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base_url = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_transform(
        type("FormgraderPolicy", (FormgraderPolicy,), {"base_url": base_url})
    )
    serverapp.log.info("tdkit: Content-Security-Policy on formgrader pages")

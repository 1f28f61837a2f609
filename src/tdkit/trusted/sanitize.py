"""Student content made inert before a grader looks at it (layer 1 of the review path).

The autograded notebook that tdkit writes is what formgrader, ``nbgrader generate_feedback``
and JupyterLab render, on the grader's own Jupyter origin. Everything in it that the student
controls (every output of the run, the sources of the cells nbgrader does not restore from the
gradebook, attachments, metadata) passes through here: JavaScript is dropped with a visible
French note, HTML goes through an allow-list sanitiser (``nh3``, the Ammonia sanitiser), SVG
is shown as an image (a browser never runs script nor loads anything from an SVG image), raw
HTML and link syntax in Markdown are escaped, and only the metadata nbgrader needs is kept.
What the student wrote and printed stays readable, images included.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any, cast

import nbformat
import nh3
from nbformat.notebooknode import NotebookNode
from nbgrader.utils import is_locked

JS_NOTE = (
    "[tdkit] Sortie JavaScript supprimée ({types}) : le code de l'étudiant ne s'exécute jamais dans le "
    "navigateur du correcteur."
)
DROPPED_NOTE = "[tdkit] Sortie non affichée ({types}) : seuls le texte, le HTML nettoyé et les images sont gardés."
IMAGE_NOTE = "[tdkit] Image invalide supprimée ({types}) : son contenu n'est pas une image {kinds}."
OUTPUT_TYPE_NOTE = "[tdkit] Sortie de type inconnu supprimée."

JAVASCRIPT_TYPES = frozenset(
    {"application/javascript", "text/javascript", "application/x-javascript", "text/ecmascript"}
)
TEXT_TYPES = frozenset({"text/plain", "text/latex"})  # every renderer shows these escaped
# Magic bytes of the raster images kept as they are (PNG, JPEG, GIF).
IMAGE_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}
NOTEBOOK_METADATA = ("kernelspec", "language_info")  # what nbgrader and Jupyter need to open it
CELL_METADATA = ("nbgrader",)  # nbgrader's own, already checked against the gradebook

# nh3's (Ammonia's) default tags, minus image maps (their areas are links nobody needs here).
HTML_TAGS = frozenset(nh3.ALLOWED_TAGS) - {"area", "map"}
# Attributes that hold a URL: checked one by one, everything else keeps nh3's defaults.
URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc", "action", "background", "poster"})
LINK_SCHEMES = ("http://", "https://", "mailto:")  # only followed when the grader clicks
# An image embedded in the page itself: no request. SVG too: as an <img>, it never runs script.
IMAGE_DATA_URL = re.compile(
    r"data:image/(png|jpeg|gif|svg\+xml);base64,[A-Za-z0-9+/=\s]*\Z", re.IGNORECASE
)


def _url_filter(tag: str, attribute: str, value: str) -> str | None:
    """Keep a URL only where it cannot load anything by itself: links to the web, images inline."""
    if attribute not in URL_ATTRIBUTES:
        return value
    url = value.strip()
    if tag == "a" and attribute == "href" and url.lower().startswith(LINK_SCHEMES):
        return url
    if tag == "img" and attribute == "src" and IMAGE_DATA_URL.match(url):
        return url
    return None


def clean_html(markup: str) -> str:
    """Allow-listed HTML: no script, style, event handler, frame, form, base, meta or remote load."""
    return nh3.clean(
        markup,
        tags=set(HTML_TAGS),
        attribute_filter=_url_filter,
        url_schemes={"http", "https", "mailto", "data"},
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )


_ATTACHED_IMAGE = re.compile(r"!\[([^\[\]<\n]*)\]\(attachment:([\w.\-]+)\)")


def _escape(text: str) -> str:
    # Entities, not backslashes: a character from an entity is never Markdown or HTML syntax.
    return text.replace("<", "&lt;").replace("[", "&#91;")


def neutralise_markdown(source: str, attachments: frozenset[str] = frozenset()) -> str:
    """Student Markdown that renders as text and formatting only: no ``<`` (raw HTML, autolinks)
    and no ``[`` (links, images, link references) is left, anywhere (code included: a renderer
    and this function could disagree on where code starts), except ``![alt](attachment:NAME)``
    for an attachment that was kept (a checked raster image)."""
    out, last = [], 0
    for match in _ATTACHED_IMAGE.finditer(source):
        if match.group(2) in attachments:
            out.append(_escape(source[last : match.start()]))
            out.append(f"![{match.group(1)}](attachment:{match.group(2)})")
            last = match.end()
    out.append(_escape(source[last:]))
    return "".join(out)


def _decoded_image(mime: str, value: Any) -> bool:
    """Whether ``value`` is base64 of an image of that type (checked by its first bytes)."""
    if not isinstance(value, str):
        return False
    try:
        raw = base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        return False
    return any(raw.startswith(magic) for magic in IMAGE_MAGIC[mime])


def _svg_as_image(svg: Any) -> str | None:
    if not isinstance(svg, str):
        return None
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{encoded}" alt="image SVG de l\'étudiant">'


def _note(text: str) -> NotebookNode:
    return cast(NotebookNode, nbformat.v4.new_output("display_data", data={"text/plain": text}))


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else str(value)


def _image_metadata(metadata: Any, kept: dict[str, Any]) -> dict[str, Any]:
    """Only numeric width and height of kept images (no 'isolated' iframe, nothing else)."""
    clean: dict[str, Any] = {}
    for mime in kept:
        entry = metadata.get(mime) if isinstance(metadata, dict) else None
        if mime in IMAGE_MAGIC and isinstance(entry, dict):
            size = {
                k: v
                for k, v in entry.items()
                if k in ("width", "height") and isinstance(v, (int, float))
            }
            if size:
                clean[mime] = size
    return clean


def sanitise_output(output: Any) -> list[NotebookNode]:
    """One output of the run, made inert: the output itself (if anything is left) and a note
    saying what was removed."""
    kind = output.get("output_type") if isinstance(output, dict) else None
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return [nbformat.v4.new_output("stream", name=name, text=_text(output.get("text", "")))]
    if kind == "error":
        traceback = output.get("traceback")
        return [
            nbformat.v4.new_output(
                "error",
                ename=_text(output.get("ename", "")),
                evalue=_text(output.get("evalue", "")),
                traceback=[_text(line) for line in traceback]
                if isinstance(traceback, list)
                else [],
            )
        ]
    if kind not in ("display_data", "execute_result"):
        return [_note(OUTPUT_TYPE_NOTE)]
    data = output.get("data") if isinstance(output.get("data"), dict) else {}
    kept: dict[str, Any] = {}
    scripts, dropped, bad_images = [], [], []
    for mime, value in data.items():
        if mime in TEXT_TYPES:
            kept[mime] = _text(value)
        elif mime in IMAGE_MAGIC:
            if _decoded_image(mime, value):
                kept[mime] = value.strip()
            else:
                bad_images.append(mime)
        elif mime == "text/html":
            kept.setdefault(mime, clean_html(_text(value)))
        elif mime == "image/svg+xml":
            image = _svg_as_image(_text(value))
            if image:
                kept["text/html"] = image  # the SVG itself, as an image, over any HTML beside it
        elif mime == "text/markdown":
            kept[mime] = neutralise_markdown(_text(value))
        elif mime in JAVASCRIPT_TYPES:
            scripts.append(mime)
        else:
            dropped.append(mime)
    outputs = []
    if kept:
        extra: dict[str, Any] = {}
        if kind == "execute_result":
            count = output.get("execution_count")
            extra["execution_count"] = count if isinstance(count, int) else None
        outputs.append(
            nbformat.v4.new_output(
                kind, data=kept, metadata=_image_metadata(output.get("metadata"), kept), **extra
            )
        )
    if scripts:
        outputs.append(_note(JS_NOTE.format(types=", ".join(scripts))))
    if dropped:
        outputs.append(_note(DROPPED_NOTE.format(types=", ".join(sorted(dropped))[:300])))
    if bad_images:
        outputs.append(
            _note(IMAGE_NOTE.format(types=", ".join(bad_images), kinds="PNG, JPEG ou GIF"))
        )
    return outputs


def _clean_attachments(attachments: Any) -> dict[str, dict[str, str]]:
    """Attachments that are checked raster images, one image type each; every other one dropped."""
    kept: dict[str, dict[str, str]] = {}
    if not isinstance(attachments, dict):
        return kept
    for name, bundle in attachments.items():
        if not (
            isinstance(name, str) and re.fullmatch(r"[\w.\-]+", name) and isinstance(bundle, dict)
        ):
            continue
        for mime, value in bundle.items():
            if mime in IMAGE_MAGIC and _decoded_image(mime, value):
                kept[name] = {mime: value.strip()}
                break
    return kept


def release_text(release: Path) -> frozenset[str]:
    """The sources of the release notebook's Markdown and raw cells: the instructor's own text."""
    nb = nbformat.read(release, as_version=4)
    return frozenset(_text(cell.source) for cell in nb.cells if cell.cell_type != "code")


def sanitise_notebook(
    nb: NotebookNode, instructor_text: frozenset[str] = frozenset()
) -> NotebookNode:
    """The notebook, with every piece the student controls made inert (a new object).

    The source of a cell nbgrader restores from the gradebook (locked), or that is exactly one of
    ``instructor_text`` (the release's own prose, which nbgrader does not lock), is kept as is."""
    nb = nbformat.from_dict(nb)
    nb.metadata = nbformat.from_dict(
        {k: nb.metadata[k] for k in NOTEBOOK_METADATA if k in nb.metadata}
    )
    for cell in nb.cells:
        student = not is_locked(cell) and _text(cell.source) not in instructor_text
        cell.metadata = nbformat.from_dict(
            {k: cell.metadata[k] for k in CELL_METADATA if k in cell.metadata}
        )
        if cell.cell_type == "code":
            cell.outputs = [
                clean for output in cell.get("outputs", []) for clean in sanitise_output(output)
            ]
            continue
        if "attachments" in cell:
            cell.attachments = _clean_attachments(cell.attachments)
            if not cell.attachments:
                del cell["attachments"]
        if not student:
            continue
        if cell.cell_type == "markdown":
            cell.source = neutralise_markdown(
                _text(cell.source), frozenset(cell.get("attachments", {}))
            )
        else:  # raw cells: some renderers insert them as HTML
            cell.source = _text(cell.source).replace("<", "&lt;")
    return nb

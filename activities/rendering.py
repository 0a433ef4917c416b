"""Render a send request's template into a :class:`~activities.messages.RenderedMessage`.

Templates live in ``templates/<name>/<locale>.html|txt|md|json`` (see
:mod:`language.templates`). The renderer

- picks the locale variant: ``profile.locale`` ``de-AT`` tries ``de-AT``, ``de_AT``, ``de``, then
  the default locale;
- renders in the same sandboxed environment validation checks against
  (:func:`~language.template_env.make_template_environment`): ``StrictUndefined``,
  autoescape for ``.html``, the ``money``/``number``/``date``/``datetime`` filters;
- for email renders the front matter ``subject`` (one line) and ``preheader``, the HTML body
  with its CSS inlined, and the text body (``.txt`` if there is one, else derived from the HTML);
  for chat the ``.md`` or ``.txt`` text; for a webhook the ``.json`` document, parsed;
- turns every failure into a non-retryable ``RenderError`` naming the file, the line and, for a
  missing variable, its name: no retry can fix a template or the data it is given;
- keeps each message within :data:`~workflows.limits.TEMPLATE_LIMITS`, counted while it renders:
  about a second of CPU (CSS inlining and the HTML's text included), 100,000 loop iterations,
  no value or body over 512 KB (:mod:`workflows.limits`). A template that passes a limit fails
  at once with the limit in the error, never after minutes or gigabytes.

Activities call :meth:`Renderer.render_async`: the work runs on a small pool of threads, so a
slow message does not hold up the worker's event loop (and the other sends on it).

Parsed templates are cached per :class:`Renderer` (one per worker process).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import css_inline
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from jinja2 import Template, TemplateSyntaxError, UndefinedError
from temporalio.exceptions import ApplicationError

from activities.errors import permanent
from activities.messages import RenderedMessage
from config.project import LOCALE_PATTERN, ProjectConfig
from language.problems import suggestion
from language.samples import json_hint
from language.template_env import ESCAPE_NAME, make_template_environment
from language.templates import ALWAYS_READABLE, FRONT_MATTER_KEYS, _template_file
from workflows.channels import CHANNELS, EMAIL
from workflows.limits import TEMPLATE_LIMITS, Budget, LimitExceeded, bounded
from workflows.models import SendRequest

log = logging.getLogger(__name__)

RENDER_ERROR = "RenderError"
MAX_OUTPUT_BYTES = 512 * 1024
"""The largest body a template may render to (HTML after CSS inlining, text, JSON)."""

_LOCALE = re.compile(LOCALE_PATTERN)
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_UNDEFINED_NAME = re.compile(
    r"has no attribute '([^']*)'|'([^']*)' is undefined|has no element '?([^']*?)'?$"
)
_MARKDOWN_LINK = re.compile(r"\[([^\[\]]*)\]\(([^()\s]*)\)")
_BLANK_LINES = re.compile(r"\n{3,}")
_INLINER = css_inline.CSSInliner(
    keep_at_rules=True,  # @media rules stay in a <style> tag: they cannot be inlined
    load_remote_stylesheets=False,  # a template must never make the worker fetch URLs
)
_TEXT_CONFIG = ParserConfig(css=CSS_PROFILES["strict"].copy(), display_links=True)
MAX_HTML_DEPTH = 1_000
"""Elements inside elements: the CSS inliner crashes the process on HTML ~10,000 deep."""
MAX_HTML_ELEMENTS = 10_000
"""Elements in an email's HTML (a long newsletter has a few thousand): deriving the text takes
about 25 µs an element, and cannot be interrupted."""
_TAG = re.compile(r"<(/?)([A-Za-z][\w:-]*)([^<>]*)>")
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    ]
)
_CLOSED_BY_ITSELF = frozenset(("p", "li", "td", "th", "tr", "option", "dt", "dd"))
RENDER_THREADS = min(4, os.cpu_count() or 1)
"""Messages rendering at once in one worker process (rendering is CPU work: more threads than
cores gain nothing, and each render may hold a few megabytes)."""
_pool: ThreadPoolExecutor | None = None


def _render_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="touchpoint-render")
    return _pool


@dataclass(frozen=True)
class _Source:
    """Where a compiled template came from, for error messages."""

    display: str  # templates/welcome/en.html
    line_offset: int  # added to Jinja's line numbers (front matter above the body)


@dataclass
class _File:
    """One parsed template file: its body and front matter, compiled."""

    display: str
    body: Template
    front_matter: dict[str, Template] = field(default_factory=dict)


class Renderer:
    """Renders templates from ``templates_dir``; create one per process and reuse it.

    ``journey_names`` maps journey ids to names for ``journey.name`` (the id when unknown);
    ``default_timezone`` is used by the date filters when a profile has no time zone.
    """

    def __init__(
        self,
        templates_dir: Path,
        default_locale: str,
        *,
        default_timezone: str = "UTC",
        journey_names: Mapping[str, str] | None = None,
    ) -> None:
        self.templates_dir = Path(templates_dir)
        self.default_locale = default_locale
        self.default_timezone = default_timezone
        self.journey_names = dict(journey_names or {})
        self.env = make_template_environment(self.templates_dir)
        self._root = str(self.templates_dir.resolve())
        self._display_root = self.templates_dir.name or "templates"
        self._files: dict[tuple[str, str, str], _File | None] = {}
        self._sources: dict[str, _Source] = {}  # compiled filename → source
        # Subjects and preheaders only, no email bodies: a population's simulation asks who
        # gets what when (``touchpoint simulate --render subjects``), not how it reads.
        self.subjects_only = False
        # Render on the caller's thread: a simulation has nothing to overlap a render with,
        # and the hop to a render thread and back cost more than the render.
        self.inline = False

    # --- public ------------------------------------------------------------------------------

    @classmethod
    def for_project(
        cls, root: Path, config: ProjectConfig, journey_names: Mapping[str, str] | None = None
    ) -> Renderer:
        """The project's templates, with its default locale and timezone."""
        return cls(
            root / "templates",
            config.defaults.locale,
            default_timezone=config.defaults.timezone,
            journey_names=journey_names,
        )

    async def render_async(
        self,
        request: SendRequest,
        *,
        unsubscribe_url: str | None = None,
        escape: Callable[[Any], str] | None = None,
    ) -> RenderedMessage:
        """:meth:`render` on the render threads, off the event loop (or at once, ``inline``)."""
        render = functools.partial(
            self.render, request, unsubscribe_url=unsubscribe_url, escape=escape
        )
        if self.inline:
            return render()
        return await asyncio.get_running_loop().run_in_executor(_render_pool(), render)

    def render(
        self,
        request: SendRequest,
        *,
        unsubscribe_url: str | None = None,
        escape: Callable[[Any], str] | None = None,
    ) -> RenderedMessage:
        """The message for ``request``, within :data:`TEMPLATE_LIMITS` (all its parts together).
        ``escape``: applied to every value a ``{{ … }}`` prints (a chat platform's)."""
        name = request.template
        channel = CHANNELS[request.channel]
        locale, files = self._variant(name, request.customer.locale, channel.files)
        names = self._names(request, locale, unsubscribe_url)
        if escape is not None:
            names[ESCAPE_NAME] = escape
        with bounded(TEMPLATE_LIMITS) as budget:
            if channel.form == "json":
                return RenderedMessage(name, locale, data=self._render_json(files["json"], names))
            if channel.form == "text":
                text = next(files[kind] for kind in channel.files if kind in files)
                return RenderedMessage(name, locale, text=_tidy_text(self._render(text, names)))
            return self._render_email(name, locale, files, names, budget)

    # --- email ---------------------------------------------------------------------------------

    def _render_email(
        self, name: str, locale: str, files: dict[str, _File], names: dict[str, Any], budget: Budget
    ) -> RenderedMessage:
        html_file, text_file = files.get("html"), files.get("txt")
        subject_template = self._front_matter(name, locale, files, "subject")
        if subject_template is None:
            raise self._error(
                f"{self._display(name, locale, 'html')}: no subject in the front matter "
                f'(nor in the default locale "{self.default_locale}")'
            )
        subject = _one_line(self._render(subject_template, names))
        preheader_template = self._front_matter(name, locale, files, "preheader")
        preheader = None
        if preheader_template is not None:
            preheader = _one_line(self._render(preheader_template, names)) or None
        html = None
        if self.subjects_only:
            return RenderedMessage(name, locale, subject=subject, preheader=preheader)
        if html_file is not None:
            html = self._render(html_file, names)
            self._check_shape(html, html_file.display)
            html = _inline_css(html, html_file.display)
            self._check_size(html, html_file.display)
            self._check_time(budget, html_file.display, "inlining its CSS")
        if text_file is not None:
            text = _tidy_text(self._render(text_file, names))
        elif html is not None and html_file is not None:
            text = _html_to_text(html)
            self._check_time(budget, html_file.display, "deriving its text")
        else:  # pragma: no cover - a variant has at least one of the two files
            text = None
        return RenderedMessage(
            name, locale, subject=subject, preheader=preheader, html=html, text=text
        )

    def _front_matter(
        self, name: str, locale: str, files: dict[str, _File], key: str
    ) -> _File | None:
        """The front matter ``key`` of the variant, else of the default locale's variant."""
        variants = [files]
        if locale != self.default_locale:
            variants.append(
                {k: f for k in EMAIL.files if (f := self._file(name, self.default_locale, k))}
            )
        for parts in variants:
            for kind in EMAIL.files:
                file = parts.get(kind)
                if file is not None and key in file.front_matter:
                    return _File(file.display, file.front_matter[key])
        return None

    # --- webhook -------------------------------------------------------------------------------

    def _render_json(self, file: _File, names: dict[str, Any]) -> Any:
        source = self._render(file, names)
        try:
            return json.loads(source)
        except RecursionError:
            raise self._error(
                f"{file.display}: the rendered JSON nests too deeply to be read"
            ) from None
        except ValueError as error:
            line = getattr(error, "lineno", None)
            offset = self._sources.get(file.body.filename or "", _Source(file.display, 0))
            where = f" line {line + offset.line_offset}" if isinstance(line, int) else ""
            message = getattr(error, "msg", str(error))
            raise self._error(
                f"{file.display}{where}: the rendered template is not valid JSON: {message} "
                f"({json_hint(source, error)})"
            ) from None

    # --- variants and files ------------------------------------------------------------------

    def _candidates(self, requested: str | None) -> list[str]:
        locales: list[str] = []
        if requested:
            wanted = requested.strip()
            language, _, region = wanted.replace("_", "-").partition("-")
            language = language.lower()
            if region:
                locales += [wanted, f"{language}-{region}", f"{language}_{region}"]
            locales.append(language)
        locales.append(self.default_locale)
        unique = dict.fromkeys(loc for loc in locales if _LOCALE.fullmatch(loc))
        return list(unique)

    def _variant(
        self, name: str, requested: str | None, kinds: tuple[str, ...]
    ) -> tuple[str, dict[str, _File]]:
        if not _TEMPLATE_NAME.fullmatch(name) or name.startswith("_") or ".." in name:
            raise self._error(f'"{name}" is not a template name')
        folder = self.templates_dir / name
        if not folder.is_dir():
            raise self._error(f'unknown template "{name}": {self._display_root}/{name}/ not found')
        candidates = self._candidates(requested)
        for locale in candidates:
            files = {kind: f for kind in kinds if (f := self._file(name, locale, kind))}
            if files:
                return locale, files
        looked = ", ".join(
            f"{self._display_root}/{name}/{loc}.{'|'.join(kinds)}" for loc in candidates
        )
        raise self._error(
            f'template "{name}" has no variant for locale "{requested or self.default_locale}" '
            f'nor the default locale "{self.default_locale}" (looked for {looked})'
        )

    def _display(self, name: str, locale: str, kind: str) -> str:
        return f"{self._display_root}/{name}/{locale}.{kind}"

    def _file(self, name: str, locale: str, kind: str) -> _File | None:
        key = (name, locale, kind)
        if key not in self._files:
            self._files[key] = self._load(name, locale, kind)
        return self._files[key]

    def _load(self, name: str, locale: str, kind: str) -> _File | None:
        path = self.templates_dir / name / f"{locale}.{kind}"
        if not path.is_file():
            return None
        display = self._display(name, locale, kind)
        problems: list[Any] = []
        parsed = _template_file(path, Path(name) / path.name, display, problems)
        if parsed is None or problems:
            first = problems[0] if problems else None
            detail = f"line {first.line}: {first.message}" if first else "cannot be read"
            raise self._error(f"{display} {detail}")
        relative = f"{name}/{path.name}"  # ends in .html for HTML: the env autoescapes by name
        body = self._compile(parsed.body, relative, f"{path}", display, parsed.body_line - 1)
        front_matter: dict[str, Template] = {}
        text = path.read_text(encoding="utf-8")
        for key in FRONT_MATTER_KEYS:
            if key in parsed.front_matter:
                line = _front_matter_line(text, key)
                front_matter[key] = self._compile(
                    parsed.front_matter[key],
                    f"{relative}#{key}",  # no .html ending: subject and preheader are plain text
                    f"{path}#{key}",
                    display,
                    line - 1,
                )
        return _File(display, body, front_matter)

    def _compile(
        self, source: str, name: str, filename: str, display: str, line_offset: int
    ) -> Template:
        self._sources[filename] = _Source(display, line_offset)
        try:
            code = self.env.compile(source, name=name, filename=filename)
        except Exception as error:
            raise self._failure(error, display) from None
        return self.env.template_class.from_code(self.env, code, self.env.make_globals(None))

    # --- rendering and errors ------------------------------------------------------------------

    def _names(
        self, request: SendRequest, locale: str, unsubscribe_url: str | None
    ) -> dict[str, Any]:
        context = request.context
        names: dict[str, Any] = {
            "profile": request.customer.model_dump(),
            "events": context.get("events") or {},
            "vars": context.get("vars") or {},
            "lookups": context.get("lookups") or {},
            "journey": {
                "id": request.journey_id,
                "version": request.journey_version,
                "name": self.journey_names.get(request.journey_id, request.journey_id),
            },
            "message": {"id": request.message_id},
            "step": {"id": request.step_id},
            "_locale": locale,
            "_timezone": self.default_timezone,
        }
        for key in ("event", "now"):
            if key in context:
                names[key] = context[key]
        if unsubscribe_url is not None:
            names["unsubscribe_url"] = unsubscribe_url
        return names

    def _render(self, file: _File, names: dict[str, Any]) -> str:
        chunks: list[str] = []
        size = 0
        stream: Iterator[str] = file.body.generate(names)
        try:
            for chunk in stream:
                size += len(chunk)
                if size > MAX_OUTPUT_BYTES:
                    break
                chunks.append(chunk)
        except Exception as error:
            raise self._failure(error, file.display) from None
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        output = "".join(chunks)
        if size > MAX_OUTPUT_BYTES:
            raise self._error(f"{file.display}: renders to more than {_kib(MAX_OUTPUT_BYTES)}")
        self._check_size(output, file.display)
        return output

    def _check_shape(self, html: str, display: str) -> None:
        """What the CSS inliner and the text converter can take (neither can be interrupted)."""
        depth, elements = _shape(html)
        if depth > MAX_HTML_DEPTH:
            raise self._error(
                f"{display}: the HTML nests elements more than {MAX_HTML_DEPTH:,} deep "
                "(the most an email may)"
            )
        if elements > MAX_HTML_ELEMENTS:
            raise self._error(
                f"{display}: the HTML has more than {MAX_HTML_ELEMENTS:,} elements "
                "(the most an email may)"
            )

    def _check_time(self, budget: Budget, display: str, doing: str) -> None:
        try:
            budget.check_time()
        except LimitExceeded as error:
            raise self._error(f"{display} ({doing}): {error}") from None

    def _check_size(self, output: str, display: str) -> None:
        size = len(output.encode("utf-8"))
        if size > MAX_OUTPUT_BYTES:
            raise self._error(
                f"{display}: renders to {_kib(size)}, more than {_kib(MAX_OUTPUT_BYTES)}"
            )

    def _failure(self, error: BaseException, display: str) -> ApplicationError:
        """A RenderError for ``error`` raised while compiling or rendering ``display``."""
        where, line = self._locate(error)
        where = where or display
        location = f"{where} line {line}" if line else where
        if where != display:
            location += f" (rendering {display})"
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        if isinstance(error, TemplateSyntaxError):
            text = f"{location}: template syntax: {message}"
        elif isinstance(error, UndefinedError):
            text = f"{location}: {message}{_undefined_hint(message)}"
        elif isinstance(error, RecursionError):
            text = f"{location}: macros or templates call each other too deeply ({message})"
        else:
            text = f"{location}: {type(error).__name__}: {message}"
        return self._error(text)

    def _locate(self, error: BaseException) -> tuple[str | None, int | None]:
        """The innermost template file and line ``error`` was raised in."""
        if isinstance(error, TemplateSyntaxError) and error.lineno:
            return self._where(error.filename, error.lineno)
        found: tuple[str | None, int | None] = (None, None)
        tb: TracebackType | None = error.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            where, line = self._where(filename, tb.tb_lineno)
            if where is not None:
                found = (where, line)
            tb = tb.tb_next
        return found

    def _where(self, filename: str | None, line: int) -> tuple[str | None, int | None]:
        if not filename:
            return None, None
        source = self._sources.get(filename)
        if source is not None:
            return source.display, line + source.line_offset
        resolved = str(Path(filename).resolve())
        if resolved.startswith(self._root + "/"):  # a layout or partial, loaded by the loader
            relative = Path(resolved).relative_to(self._root).as_posix()
            return f"{self._display_root}/{relative}", line
        return None, None

    @staticmethod
    def _error(message: str) -> ApplicationError:
        return permanent(message, RENDER_ERROR)


# --- helpers ------------------------------------------------------------------------------------


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KB"


def _undefined_name(message: str) -> str | None:
    match = _UNDEFINED_NAME.search(message)
    if match is None:
        return None
    return next((g for g in match.groups() if g), None)


def _undefined_hint(message: str) -> str:
    """A name no template is ever given is a typo; a missing key is optional data."""
    missing = _undefined_name(message)
    if missing is None:
        return ""
    if f"'{missing}' is undefined" in message and missing not in ALWAYS_READABLE:
        near = suggestion(missing, sorted(ALWAYS_READABLE - {"_locale", "_timezone"}))
        return f' (undefined: "{missing}"{near or "; a template sees profile, event, vars …"})'
    return f' (undefined: "{missing}"; give optional data a | default)'


def _front_matter_line(text: str, key: str) -> int:
    match = re.search(rf"^{re.escape(key)}\s*:", text, re.MULTILINE)
    return text[: match.start()].count("\n") + 1 if match else 2


def _one_line(text: str) -> str:
    """A header value: CR, LF and runs of whitespace become one space."""
    return " ".join(text.split())


def _tidy_text(text: str) -> str:
    """Drop blank lines around a plain-text body; keep indentation inside it."""
    text = re.sub(r"\A(?:[ \t]*\r?\n)+", "", text).rstrip()
    return text + "\n" if text else ""


def _shape(html: str) -> tuple[int, int]:
    """How deep ``html`` nests elements, at most (a browser closes some tags itself), and how
    many it has: one pass over its tags."""
    open_tags: list[str] = []
    deepest = elements = 0
    for closing, name, rest in _TAG.findall(html):
        name = name.lower()
        elements += not closing
        if closing:
            for depth in range(len(open_tags) - 1, max(len(open_tags) - 8, 0) - 1, -1):
                if open_tags[depth] == name:
                    del open_tags[depth:]
                    break
        elif name not in _VOID and not rest.endswith("/"):
            if name in _CLOSED_BY_ITSELF and open_tags and open_tags[-1] == name:
                open_tags.pop()
            open_tags.append(name)
            deepest = max(deepest, len(open_tags))
    return deepest, elements


def _inline_css(html: str, display: str) -> str:
    """Move the ``<style>`` rules into ``style=""`` attributes (what email clients honour).

    An inliner failure (odd CSS) is not worth failing a send for: the HTML goes out as written.
    """
    try:
        return str(_INLINER.inline(html))
    except (css_inline.InlineError, ValueError) as error:
        log.warning("%s: CSS not inlined: %s", display, error)
        return html


def _html_to_text(html: str) -> str:
    """A plain-text alternative: links as "text (url)", or the bare url when it is the text;
    a link with no text (an image) is left out."""
    text = get_text(html, _TEXT_CONFIG)

    def link(match: re.Match[str]) -> str:
        label, url = " ".join(match.group(1).split()), match.group(2)
        if not label or not url or url.startswith("#"):
            return label
        if label == url:
            return url
        return f"{label} ({url})"

    text = _MARKDOWN_LINK.sub(link, text)
    lines = [line.rstrip() for line in text.splitlines()]
    return _tidy_text(_BLANK_LINES.sub("\n\n", "\n".join(lines)))

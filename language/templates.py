"""Message templates on disk: what exists, in which locales, and whether it parses.

Layout (documented in ``docs/journeys.md``)::

    templates/
      _layouts/email.html        shared layouts:  {% extends "_layouts/email.html" %}
      _partials/footer.html      shared partials: {% include "_partials/footer.html" %}
      welcome/                   one folder per template, one file per locale and part
        en.html                  HTML body; front matter holds the subject
        en.txt                   plain-text body (optional for email: derived from HTML)
        de.html
      support-alert/en.md        a chat message
      crm-detractor/en.json      a webhook's data: JSON with {{ }} placeholders

A file may start with YAML front matter between ``---`` lines: ``subject`` (email, required in the
default locale) and ``preheader``. Rendering is the delivery issue's work; this module only finds
the files and checks them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import meta, nodes
from jinja2.exceptions import TemplateNotFound, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from config.project import LOCALE_PATTERN
from language.analysis import DataRead, event_properties, refusals
from language.analysis import data_reads as find_reads
from language.expressions import (
    MARKETING_EMAIL_NAMES,
    RENDERER_NAMES,
    SHAPE_HINTS,
    SHAPES,
    TEMPLATE_NAMES,
)
from language.problems import Problem, suggestion
from language.samples import check_json_template
from language.template_env import make_template_environment
from language.yamlsource import YamlError, load_yaml
from workflows.channels import CHANNELS

PARTS = ("html", "txt", "md", "json")
FRONT_MATTER_KEYS = ("subject", "preheader")
_LOCALE = re.compile(LOCALE_PATTERN)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*\n", re.DOTALL)


@dataclass(frozen=True)
class TemplateRead:
    """One read of run data in a template file, where it is written."""

    read: DataRead
    file: str  # the file as problems show it
    line: int
    column: int
    what: str = ""  # "" for the body, "front matter subject" …

    def problem(self, message: str, hint: str | None = None) -> Problem:
        return Problem(self.file, self.line, self.column, self.what, message, hint)


@dataclass(frozen=True)
class Names:
    """What one template file (body and front matter) reads: root names it does not define
    (``event``, ``profile`` …), and the shared templates it extends or includes; ``None``
    when it names one by a variable (then anything may be read). ``reads`` says where each
    read of run data is; ``assigned`` the names the file defines (set, for, macro …)."""

    roots: frozenset[str]
    uses: frozenset[str] | None
    reads: tuple[TemplateRead, ...] = ()
    assigned: frozenset[str] = frozenset()
    properties: frozenset[str] | None = frozenset()  # event properties read; None: any


@dataclass
class TemplateFile:
    path: Path
    display: str  # the path as problems show it
    locale: str
    part: str
    front_matter: dict[str, str] = field(default_factory=dict)
    front_matter_lines: dict[str, int] = field(default_factory=dict)  # line of each value
    body: str = ""
    body_line: int = 1  # line of the file on which the body starts
    names: Names = field(default_factory=lambda: Names(frozenset(), frozenset()))


@dataclass
class TemplateSet:
    name: str
    variants: dict[str, dict[str, TemplateFile]] = field(default_factory=dict)  # locale → part

    def parts(self, locale: str) -> dict[str, TemplateFile]:
        return self.variants.get(locale, {})

    def subject(self, locale: str) -> str | None:
        return next(
            (
                f.front_matter["subject"]
                for f in self.parts(locale).values()
                if "subject" in f.front_matter
            ),
            None,
        )


@dataclass
class TemplateCatalog:
    root: Path
    templates: dict[str, TemplateSet] = field(default_factory=dict)
    problems: dict[str, list[Problem]] = field(default_factory=dict)  # by template name, "" shared
    shared_files: int = 0
    shared: dict[str, Names] = field(default_factory=dict)  # layouts and partials, by file name

    def reads(self, name: str) -> frozenset[str] | None:
        """Every root name template ``name`` can read, in any locale and part, its layouts and
        partials included; ``None`` when that cannot be known (a template named by a
        variable, an unknown template)."""
        found = self._names_of(name)
        if found is None:
            return None
        names, complete = found
        if not complete:
            return None
        return frozenset().union(*(n.roots for n in names))

    def event_properties(self, name: str) -> frozenset[str] | None:
        """The event properties template ``name`` reads (every locale and part, its layouts
        and partials); ``None`` when any may be read, or that cannot be known."""
        found = self._names_of(name)
        if found is None or not found[1]:
            return None
        return _properties(found[0])

    def data_reads(self, name: str) -> list[TemplateRead]:
        """Where template ``name`` (every locale and part, the layouts and partials it uses
        that exist) reads run data."""
        found = self._names_of(name)
        return [read for names in (found[0] if found else []) for read in names.reads]

    def _names_of(self, name: str) -> tuple[list[Names], bool] | None:
        """The names of every file template ``name`` renders, and whether that list is
        complete (no layout chosen at run time, none missing); ``None``: no such template."""
        template = self.templates.get(name)
        if template is None:
            return None
        pending = [f.names for parts in template.variants.values() for f in parts.values()]
        found: list[Names] = []
        seen: set[str] = set()
        complete = True
        while pending:
            names = pending.pop()
            found.append(names)
            if names.uses is None:
                complete = False
                continue
            for used in names.uses - seen:
                seen.add(used)
                if used in self.shared:
                    pending.append(self.shared[used])
                else:
                    complete = False
        return found, complete

    @property
    def file_count(self) -> int:
        files = sum(len(parts) for t in self.templates.values() for parts in t.variants.values())
        return files + self.shared_files

    def all_problems(self) -> list[Problem]:
        return [p for problems in self.problems.values() for p in problems]

    def check_reference(
        self, name: str, channel: str, default_locale: str
    ) -> tuple[str, str] | None:
        """``(message, hint)`` when a send step cannot use template ``name``; else ``None``."""
        template = self.templates.get(name)
        folder = self.root.name or "templates"
        needed = CHANNELS[channel].files
        example = f"{folder}/{name}/{default_locale}.{needed[0]}"
        if template is None:
            return (
                f'unknown template "{name}"{suggestion(name, self.templates)}',
                f"create {example}",
            )
        parts = template.parts(default_locale)
        if not parts:
            return (
                f'template "{name}" has no "{default_locale}" variant (the default locale)',
                f"add {example}; other locales fall back to it",
            )
        if not any(part in parts for part in needed):
            kinds = " or ".join(f".{p}" for p in needed)
            return (
                f'template "{name}" has no {kinds} file for {channel} in "{default_locale}"',
                f"add {example}",
            )
        if CHANNELS[channel].form == "email" and template.subject(default_locale) is None:
            return (
                f'template "{name}" has no subject in "{default_locale}"',
                f"start {example} with front matter: ---, subject: …, ---",
            )
        return None


def load_catalog(root: Path, display_root: str) -> TemplateCatalog:
    """Find every template under ``root`` and check each file's front matter and syntax."""
    catalog = TemplateCatalog(root)
    if not root.is_dir():
        return catalog
    env = make_template_environment(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        display = f"{display_root}/{relative.as_posix()}"
        if relative.parts[0].startswith("_") or path.name.startswith("."):
            catalog.shared_files += 1
            text = _read(path)
            shared = _check_syntax(
                env, text, display, 1, catalog.problems.setdefault("", []), lines=text
            )
            catalog.shared[relative.as_posix()] = shared
            continue
        name = relative.parts[0]
        problems = catalog.problems.setdefault(name, [])
        known_before = len(problems)
        template_file = _template_file(path, relative, display, problems)
        if template_file is None:
            continue
        template = catalog.templates.setdefault(name, TemplateSet(name))
        template.variants.setdefault(template_file.locale, {})[template_file.part] = template_file
        text = _read(path)
        found = [
            _check_syntax(
                env,
                value,
                display,
                template_file.front_matter_lines.get(key, 2),
                problems,
                f"front matter {key}",
                lines=text,
            )
            for key, value in template_file.front_matter.items()
        ]
        found.append(
            _check_syntax(
                env, template_file.body, display, template_file.body_line, problems, lines=text
            )
        )
        template_file.names = _union(found)
        if template_file.part == "json" and len(problems) == known_before:  # it parses
            problem = check_json_template(root, template_file)
            if problem is not None:
                problems.append(problem)
    _check_names(catalog)
    return catalog


def _union(found: list[Names]) -> Names:
    uses: set[str] | None = set()
    for names in found:
        uses = None if uses is None or names.uses is None else uses | names.uses
    return Names(
        frozenset().union(*(n.roots for n in found)),
        None if uses is None else frozenset(uses),
        tuple(read for n in found for read in n.reads),
        frozenset().union(*(n.assigned for n in found)),
        _properties(found),
    )


def _properties(found: list[Names]) -> frozenset[str] | None:
    if any(n.properties is None for n in found):
        return None
    return frozenset().union(*(n.properties or () for n in found))


ALWAYS_READABLE = frozenset(TEMPLATE_NAMES + MARKETING_EMAIL_NAMES + RENDERER_NAMES)
_SEES = f"a template sees {', '.join(TEMPLATE_NAMES)}, and unsubscribe_url in marketing emails"


def _check_names(catalog: TemplateCatalog) -> None:
    """Names no run ever gives a template (``profil``), and keys that the fixed-shape names
    never hold (``profile.first_name``): each fails every render unless made optional."""
    files: list[tuple[str, Names]] = [("", names) for names in catalog.shared.values()]
    files += [
        (t.name, f.names)
        for t in catalog.templates.values()
        for parts in t.variants.values()
        for f in parts.values()
    ]
    defined = frozenset().union(*(names.assigned for _, names in files))
    known = sorted(ALWAYS_READABLE - set(RENDERER_NAMES))
    for owner, names in files:
        problems = catalog.problems.setdefault(owner, [])
        for place in names.reads:
            read = place.read
            if read.optional:
                continue
            if read.root not in ALWAYS_READABLE and read.root not in defined:
                problems.append(
                    place.problem(
                        f'unknown name "{read.root}"{suggestion(read.root, known)}', _SEES
                    )
                )
            elif (
                read.root in SHAPES
                and read.key is not None
                and not read.key.startswith("_")  # refused as such
                and read.key not in SHAPES[read.root]
            ):
                keys = SHAPES[read.root]
                near = suggestion(read.key, keys)
                holds = f"{read.root} holds {', '.join(keys)}"
                hint = holds if near else SHAPE_HINTS.get(read.root, holds)
                problems.append(place.problem(f'{read.root} has no "{read.key}"{near}', hint))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ""


def _template_file(
    path: Path, relative: Path, display: str, problems: list[Problem]
) -> TemplateFile | None:
    locale, _, part = path.name.partition(".")
    if len(relative.parts) != 2 or part not in PARTS or not _LOCALE.fullmatch(locale):
        problems.append(
            Problem(
                display,
                1,
                1,
                "",
                f'unexpected template file "{relative.as_posix()}"',
                "name template files <template>/<locale>.html|txt|md|json, e.g. welcome/en.html",
            )
        )
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(
            Problem(display, 1, 1, "", "template is not UTF-8 text", "save it as UTF-8")
        )
        return None
    template_file = TemplateFile(path, display, locale, part, body=text)
    match = _FRONT_MATTER.match(text)
    if match:
        template_file.body = text[match.end() :]
        template_file.body_line = text[: match.end()].count("\n") + 1
        template_file.front_matter = _front_matter(
            match.group(1) or "", display, problems, template_file.front_matter_lines
        )
    return template_file


def _front_matter(
    text: str, display: str, problems: list[Problem], lines: dict[str, int] | None = None
) -> dict[str, str]:
    try:
        data, source = load_yaml(text, display)
    except YamlError as error:
        p = error.problem
        problems.append(Problem(display, p.line + 1, p.column, "front matter", p.message, p.hint))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(
            Problem(
                display,
                2,
                1,
                "front matter",
                "expected key: value lines",
                "e.g. subject: Welcome to the shop",
            )
        )
        return {}
    result: dict[str, str] = {}
    for key, value in data.items():
        pos = source.locate((key,), key=True)
        if key not in FRONT_MATTER_KEYS:
            problems.append(
                Problem(
                    display,
                    pos.line + 1,
                    pos.column,
                    "front matter",
                    f'unknown field "{key}"{suggestion(key, FRONT_MATTER_KEYS)}',
                    "front matter holds: " + ", ".join(FRONT_MATTER_KEYS),
                )
            )
        elif not isinstance(value, str):
            problems.append(
                Problem(
                    display,
                    pos.line + 1,
                    pos.column,
                    f"front matter.{key}",
                    f"expected text, got {value!r}",
                    f'put it in quotes: {key}: "…"',
                )
            )
        else:
            result[key] = value
            if lines is not None:
                lines[key] = source.locate((key,)).line + 1
    return result


def _check_syntax(
    env: ImmutableSandboxedEnvironment,
    source: str,
    display: str,
    first_line: int,
    problems: list[Problem],
    what: str = "",
    *,
    lines: str = "",
) -> Names:
    """Report the file's syntax problems, missing shared templates and what the sandbox would
    refuse; what it reads. ``lines`` is the whole file, to find columns in."""
    try:
        tree = env.parse(source)
        env.compile(tree, raw=True)  # unknown filters and tests fail here (no Python compile)
    except TemplateSyntaxError as error:
        line = first_line + (error.lineno or 1) - 1
        message, hint = _syntax_words(env, error.message or "")
        problems.append(Problem(display, line, 1, what, f"template syntax: {message}", hint))
        return Names(frozenset(), None)
    file_lines = lines.splitlines()

    def column(line: int, *needles: str) -> int:
        text = file_lines[line - 1] if 0 < line <= len(file_lines) else ""
        for needle in needles:
            at = text.find(needle)
            if at >= 0:
                return at + 1 + (1 if needle.startswith(".") else 0)
        return 1

    uses: set[str] | None = set()
    references = tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport))
    for node in references:
        name = getattr(node, "template", None)
        if not isinstance(name, nodes.Const):
            uses = None  # a template chosen at run time: it may read anything
            continue
        if uses is not None:
            uses.add(str(name.value))
        if env.loader is None:
            continue
        try:
            env.loader.get_source(env, str(name.value))
        except TemplateNotFound:
            problems.append(
                Problem(
                    display,
                    first_line + node.lineno - 1,
                    1,
                    what,
                    f'template "{name.value}" not found',
                    "shared layouts and partials live in templates/_*/",
                )
            )
    for refusal in refusals(tree):
        line = first_line + refusal.line - 1
        problems.append(
            Problem(
                display, line, column(line, refusal.needle), what, refusal.message, refusal.hint
            )
        )
    roots = frozenset(meta.find_undeclared_variables(tree))
    reads = []
    for read in find_reads(tree, roots - set(env.globals)):
        line = first_line + read.line - 1
        reads.append(TemplateRead(read, display, line, column(line, read.text, read.root), what))
    return Names(
        roots,
        None if uses is None else frozenset(uses),
        tuple(reads),
        _assigned(tree),
        event_properties(tree, roots - set(env.globals)),
    )


def _syntax_words(env: ImmutableSandboxedEnvironment, message: str) -> tuple[str, str]:
    """Jinja's message, with "did you mean" for an unknown filter or test, and a hint."""
    found = re.search(r"No (filter|test) named '([^']+)'", message)
    if found:
        kind, name = found.groups()
        known = env.filters if kind == "filter" else env.tests
        return (
            f'unknown {kind} "{name}"{suggestion(name, known)}',
            f"{kind}s include " + ", ".join(sorted(known)[:12]) + " …",
        )
    return (
        message.rstrip("."),
        "values are written {{ … }}, tags {% … %}; every {% if %} and {% for %} needs its "
        "{% endif %} or {% endfor %}",
    )


def _assigned(tree: nodes.Template) -> frozenset[str]:
    """Names the file defines: set and for targets, macros, imports."""
    names = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    names |= {m.name for m in tree.find_all(nodes.Macro)}
    names |= {i.target for i in tree.find_all(nodes.Import)}
    for from_import in tree.find_all(nodes.FromImport):
        names |= {n if isinstance(n, str) else n[1] for n in from_import.names}
    return frozenset(names)

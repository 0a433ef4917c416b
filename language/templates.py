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
from language.problems import Problem, suggestion
from language.template_env import make_template_environment
from language.yamlsource import YamlError, load_yaml
from workflows.channels import CHANNELS

PARTS = ("html", "txt", "md", "json")
FRONT_MATTER_KEYS = ("subject", "preheader")
_LOCALE = re.compile(LOCALE_PATTERN)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*\n", re.DOTALL)


@dataclass(frozen=True)
class Names:
    """What one template file (body and front matter) reads: root names it does not define
    (``event``, ``profile`` …), and the shared templates it extends or includes; ``None``
    when it names one by a variable (then anything may be read)."""

    roots: frozenset[str]
    uses: frozenset[str] | None


@dataclass
class TemplateFile:
    path: Path
    display: str  # the path as problems show it
    locale: str
    part: str
    front_matter: dict[str, str] = field(default_factory=dict)
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
        template = self.templates.get(name)
        if template is None:
            return None
        roots: set[str] = set()
        pending = [f.names for parts in template.variants.values() for f in parts.values()]
        seen: set[str] = set()
        while pending:
            names = pending.pop()
            if names.uses is None:
                return None
            roots |= names.roots
            for used in names.uses - seen:
                seen.add(used)
                if used not in self.shared:
                    return None
                pending.append(self.shared[used])
        return frozenset(roots)

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
            shared = _check_syntax(
                env, _read(path), display, 1, catalog.problems.setdefault("", [])
            )
            catalog.shared[relative.as_posix()] = shared
            continue
        name = relative.parts[0]
        problems = catalog.problems.setdefault(name, [])
        template_file = _template_file(path, relative, display, problems)
        if template_file is None:
            continue
        template = catalog.templates.setdefault(name, TemplateSet(name))
        template.variants.setdefault(template_file.locale, {})[template_file.part] = template_file
        found = [
            _check_syntax(env, value, display, 2, problems, f"front matter {key}")
            for key, value in template_file.front_matter.items()
        ]
        found.append(
            _check_syntax(env, template_file.body, display, template_file.body_line, problems)
        )
        template_file.names = _union(found)
    return catalog


def _union(found: list[Names]) -> Names:
    uses: set[str] | None = set()
    for names in found:
        uses = None if uses is None or names.uses is None else uses | names.uses
    return Names(
        frozenset().union(*(n.roots for n in found)),
        None if uses is None else frozenset(uses),
    )


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
        problems.append(Problem(display, 1, 1, "", "template is not UTF-8 text"))
        return None
    template_file = TemplateFile(path, display, locale, part, body=text)
    match = _FRONT_MATTER.match(text)
    if match:
        template_file.body = text[match.end() :]
        template_file.body_line = text[: match.end()].count("\n") + 1
        template_file.front_matter = _front_matter(match.group(1) or "", display, problems)
    return template_file


def _front_matter(text: str, display: str, problems: list[Problem]) -> dict[str, str]:
    try:
        data, source = load_yaml(text, display)
    except YamlError as error:
        p = error.problem
        problems.append(Problem(display, p.line + 1, p.column, "front matter", p.message, p.hint))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(Problem(display, 2, 1, "front matter", "expected key: value lines"))
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
                )
            )
        else:
            result[key] = value
    return result


def _check_syntax(
    env: ImmutableSandboxedEnvironment,
    source: str,
    display: str,
    first_line: int,
    problems: list[Problem],
    what: str = "",
) -> Names:
    """Report the file's syntax problems and missing shared templates; what it reads."""
    try:
        tree = env.parse(source)
        env.compile(tree)  # unknown filters and tests fail here
    except TemplateSyntaxError as error:
        line = first_line + (error.lineno or 1) - 1
        problems.append(Problem(display, line, 1, what, f"template syntax: {error.message}"))
        return Names(frozenset(), None)
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
    roots = frozenset(meta.find_undeclared_variables(tree))
    return Names(roots, None if uses is None else frozenset(uses))

"""Jinja2's immutable sandbox as Touchpoint uses it, without any loader: journey expressions
(evaluated inside the workflow) and message templates (:mod:`language.template_env` adds the
file loader) share this class and these filters, so validation sees what rendering sees.

It is Jinja2's *immutable* sandbox with ``StrictUndefined``: an author cannot call methods that
mutate data or reach Python internals, and a missing variable is an error rather than an empty
string. It is also bounded (:class:`LimitedSandbox`): what a template or expression builds and
how much work it does are counted while it runs (:mod:`workflows.limits`). Filters registered in
:data:`FILTERS` exist in both. Nothing here reads a file.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable, Mapping
from datetime import UTC
from datetime import date as date_type
from datetime import datetime as datetime_type
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, is_currency
from jinja2 import StrictUndefined, Template, TemplateError, Undefined, nodes, pass_context
from jinja2.exceptions import FilterArgumentError
from jinja2.runtime import Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter, SecurityError
from markupsafe import Markup

from workflows.jinja_limits import (
    BoundedEscapeFormatter,
    BoundedFormatter,
    BoundedFunctions,
    bounded_filter,
    bounded_test,
    callable_name,
    check_call,
    check_percent,
    checked_result,
)
from workflows.jinja_rewrite import INTERNAL_FILTERS, finalize, join_output, loop_items, rewrite
from workflows.limits import (
    EXPRESSION_LIMITS,
    TEMPLATE_LIMITS,
    LimitExceeded,
    Limits,
    bounded,
    check_items,
    check_text,
    checking,
    cost,
    spend,
)

FILTERS: dict[str, Callable[..., Any]] = {}
"""Touchpoint's own filters (money, dates …), shared by expressions and templates."""
MAX_REPEAT = 100_000  # "x" * n and [..] * n may build at most this many characters or items
MAX_EXPONENT = 1_000
MAX_POWER_BITS = 100_000
MACRO_CALL_PRICE = 10  # operations a call of a macro, caller() or loop() is worth (~20 µs)


class BoundedTemplate(Template):
    """A template whose ``render()`` counts against the environment's :class:`Limits` (unless
    the caller already counts: a message's parts share one budget)."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        limits = getattr(self.environment, "limits", TEMPLATE_LIMITS)
        with bounded(limits, unless_bounded=True):
            return super().render(*args, **kwargs)


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, bounded: nothing a template or expression does may take a worker's
    memory or CPU (:mod:`workflows.limits`, :mod:`workflows.jinja_limits`). ``'x' * 10**9``,
    ``10 ** 10**8``, ``"x".ljust(10**9)``, ``"%*d" % (10**9, 1)``, two nested loops over
    ``range(100000)`` all fail, early, with a :class:`LimitExceeded` naming the limit."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    template_class = BoundedTemplate
    concat = staticmethod(join_output)
    limits: Limits = TEMPLATE_LIMITS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("finalize", finalize)
        super().__init__(*args, **kwargs)
        self.filters = BoundedFunctions(self.filters, bounded_filter)
        self.filters.update(INTERNAL_FILTERS)
        self.tests = BoundedFunctions(self.tests, bounded_test)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        tree = rewrite(source)
        assert isinstance(tree, nodes.Template)
        return super()._generate(tree, name, filename, defer_init=defer_init)

    def getattr(self, obj: Any, attribute: str) -> Any:
        spend()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        spend()
        value = super().getitem(obj, argument)
        if isinstance(argument, slice):
            spend(cost(value))
        return value

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if not checking():
            return super().call(__context, __obj, *args, **kwargs)
        price = MACRO_CALL_PRICE if isinstance(__obj, Macro | LoopContext) else 1
        spend(price + sum(map(cost, args)))
        if isinstance(__obj, LoopContext) and args:  # loop(children) in a recursive loop
            args = (loop_items(args[0]), *args[1:])
        args = check_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return checked_result(result, callable_name(__obj))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float):
            if abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
            # (10 ** 1000) ** 1000: each exponent is small, the result is not
            if (
                isinstance(left, int)
                and right > 0
                and abs(left).bit_length() * right > MAX_POWER_BITS
            ):
                raise SecurityError("the power would be too large a number")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_REPEAT
                ):
                    raise SecurityError(f"repeating would build more than {MAX_REPEAT} items")
        if not checking():
            return super().call_binop(context, operator, left, right)
        spend(1 + cost(left) + cost(right))
        _check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        spend(cost(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map``, through a formatter that checks each field's
        width, precision and text (:class:`BoundedFormatter`)."""
        if not isinstance(
            value, types.MethodType | types.BuiltinMethodType
        ) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        text: Any = value.__self__
        if not isinstance(text, str):
            return None
        kind: type[str] = type(text)
        is_format_map = value.__name__ == "format_map"
        formatter: SandboxedFormatter
        if isinstance(text, Markup):
            formatter = BoundedEscapeFormatter(self, escape=text.escape)
        else:
            formatter = BoundedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return kind(formatter.vformat(text, args, kwargs))

        return functools.update_wrapper(wrapper, value)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > MAX_POWER_BITS
        ):
            raise LimitExceeded("the product would be too large a number")
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, bytes | bytearray) and isinstance(count, int):
                check_text(len(sequence) * count, "*")
    elif operator == "+":
        if isinstance(left, str | bytes | bytearray) and isinstance(right, str | bytes | bytearray):
            check_text(len(left) + len(right), "+")
        elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
            check_items(len(left) + len(right), "+")
    elif operator == "%" and isinstance(left, str | bytes | bytearray):
        check_percent(left, right, "%")


NONDETERMINISTIC_FILTERS = ("random", "shuffle")
NONDETERMINISTIC_GLOBALS = ("lipsum", "cycler", "joiner")


def make_expression_environment() -> ImmutableSandboxedEnvironment:
    """Expressions run inside workflows and must give the same answer on every replay: no
    randomness (``| random``, ``lipsum()``), nothing stateful (``cycler``, ``joiner``)."""
    env = LimitedSandbox(undefined=StrictUndefined)
    env.limits = EXPRESSION_LIMITS
    env.filters.update(FILTERS)
    for name in NONDETERMINISTIC_FILTERS:
        env.filters.pop(name, None)
    for name in NONDETERMINISTIC_GLOBALS:
        env.globals.pop(name, None)
    return env


# --- locale-aware filters ---------------------------------------------------------------------
# ``money``, ``number``, ``date`` and ``datetime`` format for the reader: the locale is the
# profile's (``profile.locale``) when it speaks the language of the template variant being
# rendered (``_locale``, set by the renderer), else the variant's; dates are shown in
# ``profile.timezone`` (else ``_timezone``, else UTC). Bad input raises FilterArgumentError, a
# TemplateError: rendering reports it as a RenderError, expressions as a failed expression.

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_DECIMALS = 12


def _context_value(context: Context, *path: str) -> Any:
    value: Any = context.get(path[0])
    for key in path[1:]:
        value = value.get(key) if isinstance(value, Mapping) else getattr(value, key, None)
    return None if isinstance(value, Undefined) else value


def _parse_locale(value: Any) -> Locale | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return Locale.parse(value.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def _reader_locale(context: Context) -> Locale:
    """The profile's locale if it matches the variant's language, else the variant's, else en."""
    variant = _parse_locale(context.get("_locale"))
    profile = _parse_locale(_context_value(context, "profile", "locale"))
    if profile is not None and (variant is None or profile.language == variant.language):
        return profile
    return variant or Locale.parse("en")


def _reader_timezone(context: Context) -> ZoneInfo:
    for name in (_context_value(context, "profile", "timezone"), context.get("_timezone")):
        if isinstance(name, str) and name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _defined(value: Any) -> Any:
    """``value``, or the error naming the missing variable when it is undefined."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def _decimal(value: Any, filter_name: str) -> Decimal:
    if isinstance(_defined(value), bool):
        raise FilterArgumentError(f"{filter_name}: expected a number, got {type(value).__name__}")
    try:
        number = Decimal(str(value).strip()) if isinstance(value, float | str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise FilterArgumentError(
            f"{filter_name}: expected a number, got {type(value).__name__}"
        ) from None
    if not number.is_finite():
        raise FilterArgumentError(f"{filter_name}: expected a finite number")
    return number


def _when(value: Any, filter_name: str) -> date_type:
    """A date or datetime from a date, a datetime or an ISO 8601 string."""
    if isinstance(_defined(value), date_type):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if _ISO_DATE.fullmatch(text):
                return date_type.fromisoformat(text)
            return datetime_type.fromisoformat(text)
        except ValueError:
            pass
    raise FilterArgumentError(
        f"{filter_name}: expected a date, a datetime or ISO text, got {type(value).__name__}"
    )


def _babel(filter_name: str, call: Callable[[], str]) -> str:
    try:
        return call()
    except (FilterArgumentError, TemplateError):
        raise
    except Exception as error:  # babel raises many kinds on odd patterns or values
        raise FilterArgumentError(f"{filter_name}: {error}") from None


@pass_context
def money_filter(context: Context, amount: Any, currency: Any) -> str:
    """``{{ p.price | money(p.currency) }}`` → "1.299,00 €" (de), "€1,299.00" (en)."""
    number = _decimal(amount, "money")
    code = currency.strip().upper() if isinstance(_defined(currency), str) else currency
    if not isinstance(code, str) or not is_currency(code):
        raise FilterArgumentError(f"money: {currency!r} is not a currency code such as EUR")
    locale = _reader_locale(context)
    return _babel("money", lambda: format_currency(number, code, locale=locale))


@pass_context
def number_filter(context: Context, value: Any, decimals: Any = None) -> str:
    """``{{ 1234.5 | number }}`` → "1.234,5" (de); ``number(2)`` → "1.234,50"."""
    number = _decimal(value, "number")
    locale = _reader_locale(context)
    if decimals is None:
        return _babel("number", lambda: format_decimal(number, locale=locale))
    if isinstance(decimals, bool) or not isinstance(decimals, int):
        raise FilterArgumentError(f"number: decimals must be a whole number, got {decimals!r}")
    if not 0 <= decimals <= _MAX_DECIMALS:
        raise FilterArgumentError(f"number: decimals must be 0 to {_MAX_DECIMALS}")
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    rounded = number.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)
    return _babel("number", lambda: format_decimal(rounded, format=pattern, locale=locale))


def _pattern(value: Any, filter_name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 100:
        raise FilterArgumentError(
            f"{filter_name}: format must be short, medium, long, full or a pattern"
        )
    return value


@pass_context
def date_filter(context: Context, value: Any, format: Any = "medium") -> str:
    """``{{ event.timestamp | date }}`` → "03.05.2024" (de); datetimes in the reader's zone."""
    when = _when(value, "date")
    pattern = _pattern(format, "date")
    if isinstance(when, datetime_type):
        aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        when = aware.astimezone(_reader_timezone(context)).date()
    locale = _reader_locale(context)
    return _babel("date", lambda: format_date(when, format=pattern, locale=locale))


@pass_context
def datetime_filter(context: Context, value: Any, format: Any = "medium") -> str:
    """``{{ now | datetime('short') }}`` → "03.05.24, 10:00" (de), in the reader's time zone."""
    when = _when(value, "datetime")
    pattern = _pattern(format, "datetime")
    if not isinstance(when, datetime_type):
        when = datetime_type(when.year, when.month, when.day)
    zone = _reader_timezone(context)
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    locale = _reader_locale(context)
    return _babel(
        "datetime",
        lambda: format_datetime(aware.astimezone(zone), format=pattern, locale=locale),
    )


FILTERS.update(
    {
        "money": money_filter,
        "number": number_filter,
        "date": date_filter,
        "datetime": datetime_filter,
    }
)

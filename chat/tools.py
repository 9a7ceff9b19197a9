"""The built-in tools MiMo may call, run on the server, and calls it wrote into its reasoning instead.

Two tools, `current_time` and `calculator`, are plain functions dispatched by
name in `run_tool`; a third tool is a third branch there, not a registry.
Results and errors are short text for the model. An error starts with "Error:"
because the OpenAI format has no is_error flag: the text alone must say so.
"""

import ast
import json
import logging
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from chat.mimo import FunctionTool

__all__ = ["TOOLS", "ToolOutcome", "run_tool", "tool_calls_in_reasoning"]

logger = logging.getLogger(__name__)

# Results go back into the context window on every later turn.
MAX_RESULT_CHARS = 20_000
MAX_EXPRESSION_CHARS = 500
# About 1,000 decimal digits: exact big integers are useful, megabytes of digits are not.
MAX_INT_BITS = 3_322
# round(12345, -10**9) would compute 10**(10**9) before answering.
MAX_ROUND_DIGITS = 100

TOOLS = [
    FunctionTool(
        name="current_time",
        description=(
            "Get the current date, time and day of the week. You have no clock of your own: call this "
            "whenever the answer depends on today's date, the weekday, the time of day, or how long "
            "until or since a date. Without time_zone it answers in the user's own time zone."
        ),
        parameters={
            "type": "object",
            "properties": {
                "time_zone": {
                    "type": "string",
                    "description": (
                        "An IANA time zone name such as 'Europe/Paris', 'America/New_York', "
                        "'Asia/Shanghai' or 'UTC'. Leave it out for the user's own time zone."
                    ),
                },
            },
            "required": [],
            "additionalProperties": False,
        },
    ),
    FunctionTool(
        name="calculator",
        description=(
            "Evaluate an arithmetic expression exactly and return the number. Use it for any arithmetic "
            "that is not trivial instead of working it out in your head. Supports numbers, + - * / "
            "// (floor division) % (remainder) ** (power; ^ is not power), parentheses, the functions "
            "sqrt, sin, cos, tan (radians), log (natural, or log(x, base)), log10, exp, abs, "
            "round (round(x) or round(x, digits)), floor, ceil, and the constants pi and e. "
            "Integers are exact up to about 1,000 digits."
        ),
        parameters={
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "The expression, for example '(17.5 * 3) / 4' or 'sqrt(2) * 10**6'.",
                },
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
    ),
]


@dataclass(frozen=True)
class ToolOutcome:
    # What goes back to the model as the tool result.
    result: str
    is_error: bool
    # The parsed arguments, for storing and showing; None when they were not a JSON object.
    arguments: dict[str, Any] | None


class ToolError(Exception):
    """A problem the model can fix by calling again differently; its text goes to the model."""


def run_tool(name: str, arguments: str, *, time_zone: str | None = None) -> ToolOutcome:
    """Run one tool call from MiMo; `time_zone` is the user's, the default for current_time.

    Never raises for anything the model sent: bad input becomes an error outcome.
    """
    parsed = None
    try:
        parsed = _parse_arguments(arguments)
        result = _dispatch(name, parsed, time_zone)
    except ToolError as error:
        return ToolOutcome(_capped(f"Error: {error}"), True, parsed)
    except Exception:
        logger.exception("Built-in tool %r failed", name)
        return ToolOutcome("Error: the tool failed unexpectedly on the server.", True, parsed)
    return ToolOutcome(_capped(json.dumps(result, ensure_ascii=False)), False, parsed)


def _dispatch(name: str, arguments: dict[str, Any], user_time_zone: str | None) -> dict[str, Any]:
    if name == "current_time":
        _reject_unknown_arguments(arguments, {"time_zone"})
        zone_name = _string_argument(arguments, "time_zone", required=False)
        return current_time(zone_name or _usable_zone_name(user_time_zone))
    if name == "calculator":
        _reject_unknown_arguments(arguments, {"expression"})
        return calculate(_string_argument(arguments, "expression", required=True))
    offered = ", ".join(tool.name for tool in TOOLS)
    raise ToolError(f"unknown tool {_quoted(name)}; the available tools are: {offered}.")


def _parse_arguments(arguments: str) -> dict[str, Any]:
    # Some models send "" rather than "{}" for a call without arguments.
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError) as error:
        raise ToolError(f"arguments are not valid JSON: {error}. Send one JSON object.") from None
    if not isinstance(value, dict):
        raise ToolError(f"arguments must be a JSON object, not {_json_type(value)}.")
    return value


def _reject_unknown_arguments(arguments: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(arguments) - known)
    if unknown:
        names = ", ".join(_quoted(key) for key in unknown)
        raise ToolError(f"unexpected argument {names}; this tool takes only: {', '.join(sorted(known))}.")


def _string_argument(arguments: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = arguments.get(key)
    if value is not None and not isinstance(value, str):
        raise ToolError(f"the argument {key!r} must be a string, not {_json_type(value)}.")
    # Models often send null or "" for an optional argument they mean to leave out.
    text = (value or "").strip()
    if required and not text:
        raise ToolError(f"the argument {key!r} is required and must not be empty.")
    return text or None


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), "an object" if isinstance(value, dict) else "null")


def _quoted(text: str) -> str:
    # Names and values come from the model; never echo a whole megabyte back to it.
    return repr(text if len(text) <= 100 else text[:100] + "…")


def _capped(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[: MAX_RESULT_CHARS - 20] + " … (truncated)"


# --- current_time ---------------------------------------------------------------


def current_time(zone_name: str, now: datetime | None = None) -> dict[str, str]:
    """The date and time in an IANA zone; `now` (aware) is for tests."""
    zone = _zone(zone_name)
    moment = (now or datetime.now(UTC)).astimezone(zone)
    return {
        "datetime": moment.isoformat(timespec="seconds"),
        "weekday": moment.strftime("%A"),
        "utc_offset": _offset_text(moment),
        "time_zone": zone_name,
    }


def _zone(name: str) -> tzinfo:
    # UTC works even where the system has no time zone database (a slim image without tzdata).
    if name == "UTC":
        return UTC
    # "localtime" is a file in the zone directory on Debian: the server's own zone, not an IANA name.
    if name != "localtime":
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise ToolError(f"unknown time zone {_quoted(name)}. {_zone_hint(name)}")


def _zone_hint(name: str) -> str:
    suggestion = _zone_names_by_lowercase().get(name.lower())
    if suggestion:
        return f"Zone names are case-sensitive: did you mean {suggestion!r}?"
    return "Use an IANA name such as 'Europe/Paris', 'America/New_York', 'Asia/Shanghai' or 'UTC'."


@cache
def _zone_names_by_lowercase() -> dict[str, str]:
    # Once per process and only after a mistake: listing the zones reads hundreds of files.
    return {zone.lower(): zone for zone in available_timezones() if zone != "localtime"}


def _usable_zone_name(user_time_zone: str | None) -> str:
    """The user's zone when it is a real one; UTC otherwise, since the model cannot fix the user's profile."""
    if not user_time_zone:
        return "UTC"
    try:
        _zone(user_time_zone)
    except ToolError:
        logger.warning("The user's time zone %r is unknown; current_time answers in UTC", user_time_zone)
        return "UTC"
    return user_time_zone


def _offset_text(moment: datetime) -> str:
    minutes = round(moment.utcoffset().total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


# --- calculator -----------------------------------------------------------------
#
# The expression is parsed with ast and walked node by node; only the node
# shapes below are evaluated, so names, attributes, calls to anything else,
# strings, lambdas and comprehensions never run. No eval, exec or compile.

Number = int | float


def _round(value: Number, digits: Number = 0) -> Number:
    if not isinstance(digits, int):
        raise ToolError("round(x, digits): digits must be a whole number.")
    if abs(digits) > MAX_ROUND_DIGITS:
        raise ToolError(f"round(x, digits): digits must be between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}.")
    return round(value, digits) if digits else round(value)


# name: (function, fewest arguments, most arguments)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    "sqrt": (math.sqrt, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "log": (math.log, 1, 2),
    "log10": (math.log10, 1, 1),
    "exp": (math.exp, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def _power(base: Number, exponent: Number) -> Number:
    # Refuse before computing: 9**9**9 would take minutes and gigabytes to build.
    # |base| >= 2 means at least `exponent` bits, so the first test also keeps
    # the log2 product within float range.
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent > MAX_INT_BITS or exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise ToolError("the result would have more than about 1,000 digits.")
    return base**exponent


OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}


def calculate(expression: str) -> dict[str, Any]:
    """Evaluate an arithmetic expression from the allow-list above."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters; split the calculation.")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        raise ToolError(f"{_quoted(expression)} is not a valid expression: {error.msg}.") from None
    try:
        value = _evaluate(tree.body)
    except ZeroDivisionError:
        raise ToolError("division by zero.") from None
    except OverflowError:
        raise ToolError("a number in this calculation is too large.") from None
    except ValueError as error:
        # math's "math domain error": sqrt(-1), log(0) and the like.
        raise ToolError(f"{error} (for example sqrt or log of a negative number).") from None
    except RecursionError:
        raise ToolError("the expression is nested too deeply.") from None
    return {"expression": expression, "result": _plain(value)}


def _evaluate(node: ast.expr) -> Number:
    match node:
        case ast.Constant(value=value) if type(value) in (int, float):
            return value
        case ast.Name(id=name) if name in CONSTANTS:
            return CONSTANTS[name]
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return _checked(-_evaluate(operand))
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _evaluate(operand)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in OPERATORS:
            return _checked(OPERATORS[type(op)](_evaluate(left), _evaluate(right)))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in FUNCTIONS:
            return _checked(_call(name, [_evaluate(arg) for arg in args]))
    raise ToolError(_refusal(node))


def _call(name: str, args: list[Number]) -> Number:
    function, fewest, most = FUNCTIONS[name]
    if not fewest <= len(args) <= most:
        expected = str(fewest) if fewest == most else f"{fewest} or {most}"
        raise ToolError(f"{name}() takes {expected} argument(s), not {len(args)}.")
    return function(*args)


def _checked(value: Any) -> Number:
    """Every intermediate value stays a real, finite, bounded number; this bounds the cost of each next step."""
    if isinstance(value, complex):
        raise ToolError("the result is not a real number (a fractional power of a negative number).")
    # Infinity is caught where it first appears, so NaN (inf - inf) cannot follow.
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("a number in this calculation is too large.")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError("the result would have more than about 1,000 digits.")
    return value


def _refusal(node: ast.AST) -> str:
    allowed = (
        "Only numbers, + - * / // % **, parentheses, the functions "
        f"{', '.join(FUNCTIONS)} and the constants {', '.join(CONSTANTS)} are allowed."
    )
    match node:
        case ast.BinOp(op=ast.BitXor()):
            return "^ is not supported; write powers with **."
        case ast.Constant(value=value):
            return f"{type(value).__name__} values are not allowed. {allowed}"
        case ast.Name(id=name) | ast.Call(func=ast.Name(id=name)) if name not in FUNCTIONS and name not in CONSTANTS:
            return f"unknown name {_quoted(name)}. {allowed}"
        case ast.Name(id=name):
            return f"{name} is a function: call it, as in {name}(x). {allowed}"
        case ast.Call(func=ast.Name(id=name)) if name in CONSTANTS:
            return f"{name} is a constant, not a function. {allowed}"
        case ast.Call(func=ast.Name(), keywords=[_, *_]):
            return "functions take positional arguments only, as in round(x, 2)."
        case ast.Attribute() | ast.Call(func=ast.Attribute()):
            return f"attribute access is not allowed. {allowed}"
    return f"{type(node).__name__} is not allowed here. {allowed}"


def _plain(value: Number) -> Number:
    """A float to 15 significant digits (0.1 + 0.2 is 0.3), and a whole one as an integer."""
    if isinstance(value, float):
        value = float(f"{value:.15g}")
        if value.is_integer() and abs(value) < 1e15:
            return int(value)
    return value


# --- Calls written into reasoning -------------------------------------------------
#
# With thinking on, MiMo sometimes writes a tool call into its reasoning instead
# of emitting tool_calls (mimo-api.md §4.4), so nothing runs. These shapes count
# as a call to NAME; prose that only mentions NAME ("the calculator could help",
# "`current_time`", "calculator (a tool)") does not:
#   <tool_call> followed by NAME, {"name": "NAME" or <function=NAME   (Hermes / Qwen markup)
#   <function=NAME> and <invoke name="NAME">                           (XML-style call markup)
#   {"name": "NAME", "arguments"|"parameters"|"input"|"args": ...}     (a JSON call object;
#       also with single quotes, the keys in either order, or inside "function": {...})
#   NAME( with no space before the parenthesis, but not NAME(s)         (a Python-style call)
# Inexact on purpose: a reasoning text that writes `calculator(` while
# explaining a call still counts. The cost is one needless notice to the user.

_ARGUMENT_KEYS = r"""["'](?:arguments|parameters|input|args)["']\s*:"""


def _call_patterns(name: str) -> list[str]:
    # Tool names may contain - and _, so "word" boundaries are spelt out.
    exact = rf"(?<![\w-]){re.escape(name)}(?![\w-])"
    quoted_name = rf"""["']name["']\s*:\s*["']{re.escape(name)}["']"""
    return [
        rf"""<tool_call>\s*(?:\{{\s*["']name["']\s*:\s*["']|<function=)?{exact}""",
        rf"""<function=["']?{exact}["']?>""",
        rf"""<invoke\s+name=["']{exact}["']""",
        rf"{quoted_name}\s*,\s*{_ARGUMENT_KEYS}",
        rf"{_ARGUMENT_KEYS}\s*(?:\{{[^{{}}]*\}}|\"[^\"]*\")\s*,\s*{quoted_name}",
        rf"""["']function["']\s*:\s*\{{\s*{quoted_name}""",
        rf"{exact}\((?!s\))",
    ]


def tool_calls_in_reasoning(reasoning: str, tool_names: Iterable[str]) -> list[str]:
    """The offered tools that the reasoning seems to call in writing, in the order offered."""
    found = []
    for name in dict.fromkeys(tool_names):
        if any(re.search(pattern, reasoning) for pattern in _call_patterns(name)):
            found.append(name)
    return found

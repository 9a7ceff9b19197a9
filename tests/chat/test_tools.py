"""chat/tools.py: the built-in tools MiMo calls, run on the server, and calls lost in reasoning."""

import json
import logging
import re
import time
from datetime import UTC, datetime

import pytest

from chat import tools
from chat.tools import TOOLS, ToolOutcome, run_tool, tool_calls_in_reasoning

# Monday 1 January 2024, 23:30 UTC: already Tuesday in Tokyo, still Monday in Los Angeles.
NEW_YEAR_NIGHT = datetime(2024, 1, 1, 23, 30, tzinfo=UTC)
MIDSUMMER = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


def calculator(expression):
    return run_tool("calculator", json.dumps({"expression": expression}))


def result_of(expression):
    outcome = calculator(expression)
    assert not outcome.is_error, outcome.result
    return json.loads(outcome.result)["result"]


def error_of(outcome):
    assert outcome.is_error
    assert outcome.result.startswith("Error: ")
    return outcome.result


# --- The definitions sent to MiMo ---------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_tool_names_match_the_api_pattern(tool):
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tool.name)


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_tool_schemas_are_objects_whose_required_list_names_their_properties(tool):
    schema = tool.parameters
    assert schema["type"] == "object"
    assert isinstance(schema["required"], list)
    assert set(schema["required"]) <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    json.dumps(schema)
    assert len(tool.description) > 50


def test_every_offered_tool_runs():
    for tool in TOOLS:
        arguments = {name: "1" if name == "expression" else "UTC" for name in tool.parameters["properties"]}
        outcome = run_tool(tool.name, json.dumps(arguments))
        assert not outcome.is_error, outcome.result


def test_tool_names_are_unique():
    names = [tool.name for tool in TOOLS]
    assert len(names) == len(set(names)) == 2


# --- current_time ---------------------------------------------------------------------


def test_current_time_gives_date_weekday_offset_and_zone():
    assert tools.current_time("Asia/Tokyo", now=NEW_YEAR_NIGHT) == {
        "datetime": "2024-01-02T08:30:00+09:00",
        "weekday": "Tuesday",
        "utc_offset": "+09:00",
        "time_zone": "Asia/Tokyo",
    }


def test_current_time_west_of_utc_is_still_the_day_before():
    answer = tools.current_time("America/Los_Angeles", now=NEW_YEAR_NIGHT)
    assert answer["datetime"] == "2024-01-01T15:30:00-08:00"
    assert answer["weekday"] == "Monday"
    assert answer["utc_offset"] == "-08:00"


def test_current_time_follows_daylight_saving_time():
    assert tools.current_time("Europe/Paris", now=NEW_YEAR_NIGHT)["utc_offset"] == "+01:00"
    assert tools.current_time("Europe/Paris", now=MIDSUMMER)["utc_offset"] == "+02:00"


def test_current_time_shows_offsets_that_are_not_whole_hours():
    assert tools.current_time("Asia/Kathmandu", now=MIDSUMMER)["utc_offset"] == "+05:45"
    assert tools.current_time("America/St_Johns", now=NEW_YEAR_NIGHT)["utc_offset"] == "-03:30"


def test_current_time_in_utc():
    assert tools.current_time("UTC", now=MIDSUMMER)["datetime"] == "2024-07-01T12:00:00+00:00"


def test_current_time_is_now():
    before = datetime.now(UTC).replace(microsecond=0)
    outcome = run_tool("current_time", '{"time_zone": "Asia/Shanghai"}')
    answer = json.loads(outcome.result)
    moment = datetime.fromisoformat(answer["datetime"])
    assert before <= moment <= datetime.now(UTC)
    assert answer["time_zone"] == "Asia/Shanghai"
    assert outcome.arguments == {"time_zone": "Asia/Shanghai"}


def test_current_time_defaults_to_the_users_time_zone():
    outcome = run_tool("current_time", "{}", time_zone="America/New_York")
    assert json.loads(outcome.result)["time_zone"] == "America/New_York"


def test_current_time_argument_wins_over_the_users_time_zone():
    outcome = run_tool("current_time", '{"time_zone": "Asia/Tokyo"}', time_zone="America/New_York")
    assert json.loads(outcome.result)["time_zone"] == "Asia/Tokyo"


@pytest.mark.parametrize("arguments", ["", "{}", '{"time_zone": null}', '{"time_zone": ""}'])
def test_current_time_without_a_zone_from_anyone_is_utc(arguments):
    outcome = run_tool("current_time", arguments)
    assert not outcome.is_error
    assert json.loads(outcome.result)["time_zone"] == "UTC"


def test_an_unknown_user_time_zone_falls_back_to_utc_and_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="chat.tools"):
        outcome = run_tool("current_time", "{}", time_zone="Nowhere/Special")
    assert json.loads(outcome.result)["time_zone"] == "UTC"
    assert "Nowhere/Special" in caplog.text


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "UTC+8", "Europe/", "../etc/passwd", "/etc/localtime", "localtime"])
def test_an_unknown_time_zone_is_an_error_naming_it(zone):
    outcome = run_tool("current_time", json.dumps({"time_zone": zone}))
    assert f"unknown time zone {zone!r}" in error_of(outcome)
    assert outcome.arguments == {"time_zone": zone}


def test_a_wrongly_cased_time_zone_gets_a_suggestion():
    outcome = run_tool("current_time", '{"time_zone": "asia/shanghai"}')
    assert "did you mean 'Asia/Shanghai'" in error_of(outcome)


# --- calculator: answers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("8 / 2", 4),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("-3 + +2", -1),
        ("0.1 + 0.2", 0.3),
        ("1e20 * 3", 3e20),
        ("sqrt(16)", 4),
        ("sqrt(2)", 1.4142135623731),
        ("sin(pi / 2)", 1),
        ("cos(0)", 1),
        ("tan(0)", 0),
        ("log(e)", 1),
        ("log(8, 2)", 3),
        ("log10(1000)", 3),
        ("exp(0)", 1),
        ("abs(-2.5)", 2.5),
        ("round(2.675, 1)", 2.7),
        ("round(1234, -2)", 1200),
        ("round(2.5)", 2),
        ("floor(-2.5)", -3),
        ("ceil(2.1)", 3),
        ("pi", 3.14159265358979),
        ("2 ** 100", 1267650600228229401496703205376),
    ],
)
def test_calculator_evaluates_arithmetic(expression, expected):
    assert result_of(expression) == expected


def test_calculator_result_names_the_expression():
    outcome = calculator("6 * 7")
    assert json.loads(outcome.result) == {"expression": "6 * 7", "result": 42}
    assert outcome == ToolOutcome('{"expression": "6 * 7", "result": 42}', False, {"expression": "6 * 7"})


def test_calculator_keeps_big_integers_exact():
    assert result_of("2 ** 3000") == 2**3000
    assert result_of("3 ** 2000 - 3 ** 2000 + 1") == 1


# --- calculator: refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "(1).real",
        "math.sqrt(4)",
        "().__class__.__bases__[0].__subclasses__()",
        "x + 1",
        "open('/etc/passwd')",
        "eval('1')",
        "pow(2, 3)",
        "lambda: 1",
        "[x for x in (1, 2)]",
        "{x: 1 for x in (1,)}",
        "(x for x in (1,))",
        "'abc'",
        "'a' * 3",
        "b'a'",
        "1j",
        "True + 1",
        "[1, 2]",
        "(1, 2)",
        "1 < 2",
        "1 if 1 else 2",
        "(y := 2)",
        "1 << 10",
        "~1",
        "not 1",
        "sqrt(*[4])",
        "round(x=2.5)",
        "sqrt",
        "pi(2)",
        "f'{1}'",
    ],
)
def test_calculator_refuses_anything_outside_the_allow_list(expression):
    error_of(calculator(expression))


def test_calculator_explains_what_is_allowed():
    error = error_of(calculator("__import__('os')"))
    assert "unknown name '__import__'" in error
    assert "sqrt" in error and "pi" in error


def test_calculator_refuses_attribute_access():
    assert "attribute access is not allowed" in error_of(calculator("(1).real"))


def test_calculator_says_caret_is_not_power():
    assert "**" in error_of(calculator("2 ^ 8"))


@pytest.mark.parametrize("expression", ["9**9**9", "10**100000", "2**(10**10)", "(10**900) * (10**900)", "(-7)**5000"])
def test_calculator_refuses_huge_integers_at_once(expression):
    started = time.perf_counter()
    assert "1,000 digits" in error_of(calculator(expression))
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("expression", ["1e308 * 10", "exp(1000)", "2.0 ** 10000", "10**1000 * 1.5", "sqrt(10**1000)"])
def test_calculator_refuses_float_overflow(expression):
    assert "too large" in error_of(calculator(expression))


def test_calculator_refuses_a_huge_rounding_precision():
    started = time.perf_counter()
    error_of(calculator("round(12345, -1000000000)"))
    assert time.perf_counter() - started < 0.5


def test_calculator_refuses_long_input_without_echoing_it():
    expression = "1+" * 300 + "1"
    error = error_of(calculator(expression))
    assert "500 characters" in error
    assert expression not in error


@pytest.mark.parametrize("expression", ["1 / 0", "1 // 0", "1 % 0", "1.5 / 0.0", "0 ** -1"])
def test_calculator_reports_division_by_zero(expression):
    assert error_of(calculator(expression)) == "Error: division by zero."


@pytest.mark.parametrize("expression", ["sqrt(-1)", "log(0)", "log(-1)"])
def test_calculator_reports_math_domain_errors(expression):
    assert "math domain error" in error_of(calculator(expression))


def test_calculator_refuses_complex_results():
    assert "not a real number" in error_of(calculator("(-8) ** (1/3)"))


@pytest.mark.parametrize("expression", ["2 +", "(1", "1 2", "sqrt(4", "\x00"])
def test_calculator_reports_syntax_errors(expression):
    assert "not a valid expression" in error_of(calculator(expression))


def test_calculator_checks_function_argument_counts():
    assert "takes 1 argument" in error_of(calculator("sqrt(1, 2)"))
    assert "takes 1 or 2 argument" in error_of(calculator("round()"))


def test_calculator_survives_deep_nesting():
    outcome = calculator("-" * 480 + "1")
    assert not outcome.is_error


# --- run_tool: arguments and failures -------------------------------------------------


@pytest.mark.parametrize("arguments", ["{bad", '{"expression": "1"', "expression=1", "{'expression': '1'}", "[" * 10**5])
def test_malformed_json_is_an_error_the_model_can_act_on(arguments):
    outcome = run_tool("calculator", arguments)
    assert error_of(outcome).startswith("Error: arguments are not valid JSON: ")
    assert outcome.arguments is None


@pytest.mark.parametrize("arguments", ['"1 + 1"', "[1]", "42", "null"])
def test_arguments_must_be_a_json_object(arguments):
    outcome = run_tool("calculator", arguments)
    assert "must be a JSON object" in error_of(outcome)
    assert outcome.arguments is None


@pytest.mark.parametrize(
    ("name", "arguments", "complaint"),
    [
        ("calculator", {"expression": 42}, "must be a string, not a number"),
        ("calculator", {"expression": ["1"]}, "must be a string, not an array"),
        ("calculator", {"expression": True}, "must be a string, not a boolean"),
        ("current_time", {"time_zone": 8}, "must be a string, not a number"),
        ("current_time", {"time_zone": {"name": "UTC"}}, "must be a string, not an object"),
    ],
)
def test_wrong_argument_types_are_errors(name, arguments, complaint):
    outcome = run_tool(name, json.dumps(arguments))
    assert complaint in error_of(outcome)
    assert outcome.arguments == arguments


@pytest.mark.parametrize("arguments", ["{}", '{"expression": null}', '{"expression": "  "}'])
def test_a_missing_expression_is_an_error(arguments):
    assert "'expression' is required" in error_of(run_tool("calculator", arguments))


def test_unexpected_arguments_are_errors():
    outcome = run_tool("current_time", '{"time_zone": "UTC", "format": "12h"}')
    assert "unexpected argument 'format'" in error_of(outcome)


def test_an_unknown_tool_is_an_error_listing_the_real_ones():
    outcome = run_tool("web_browser", '{"url": "https://example.com"}')
    error = error_of(outcome)
    assert "unknown tool 'web_browser'" in error
    assert "current_time" in error and "calculator" in error
    assert outcome.arguments == {"url": "https://example.com"}


def test_an_unexpected_failure_is_a_generic_error_and_logged(monkeypatch, caplog):
    def broken(expression):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(tools, "calculate", broken)
    outcome = calculator("1 + 1")
    assert error_of(outcome) == "Error: the tool failed unexpectedly on the server."
    assert "secret internals" not in outcome.result
    assert outcome.arguments == {"expression": "1 + 1"}
    [record] = [record for record in caplog.records if record.name == "chat.tools"]
    assert record.levelno == logging.ERROR
    assert record.exc_info[0] is RuntimeError


def test_results_are_capped(monkeypatch):
    monkeypatch.setattr(tools, "calculate", lambda expression: {"result": "9" * 100_000})
    assert len(calculator("1").result) <= tools.MAX_RESULT_CHARS


def test_a_long_unknown_name_is_not_echoed_in_full():
    assert len(run_tool("x" * 100_000, "{}").result) < 500


# --- Calls written into reasoning -----------------------------------------------------

OFFERED = ["current_time", "calculator"]


@pytest.mark.parametrize(
    ("reasoning", "called"),
    [
        ('<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n</tool_call>', ["calculator"]),
        ("<tool_call>\n<function=current_time>\n<parameter=time_zone>UTC</parameter>\n</function>", ["current_time"]),
        ("<function=calculator>\n<parameter=expression>17*23</parameter>\n</function>", ["calculator"]),
        ("<tool_call>calculator\n<arg_key>expression</arg_key><arg_value>1+1</arg_value></tool_call>", ["calculator"]),
        ('So: {"name": "current_time", "arguments": {"time_zone": "Asia/Tokyo"}}', ["current_time"]),
        ("{'name': 'calculator', 'parameters': {'expression': '3*3'}}", ["calculator"]),
        ('{"arguments": {"expression": "1+1"}, "name": "calculator"}', ["calculator"]),
        ('{"type": "function", "function": {"name": "current_time", "arguments": "{}"}}', ["current_time"]),
        ('<invoke name="current_time">\n</invoke>', ["current_time"]),
        ("Let me compute: calculator(expression=\"17 * 23\")", ["calculator"]),
        ("current_time(time_zone='UTC')", ["current_time"]),
        ("First current_time() then calculator(\"365 - 40\")", ["current_time", "calculator"]),
        ("calculator(\"1+1\") and again calculator(\"2+2\")", ["calculator"]),
    ],
)
def test_calls_written_into_reasoning_are_found(reasoning, called):
    assert tool_calls_in_reasoning(reasoning, OFFERED) == called


@pytest.mark.parametrize(
    "reasoning",
    [
        "",
        "I could use the calculator to check this product.",
        "Maybe I should call current_time to learn today's date.",
        "The `calculator` tool handles arithmetic; `current_time` gives the date.",
        "The calculator (a tool I have) would help here.",
        "Which of the calculator(s) should I use?",
        "sqrt(2) is about 1.414, and round(2.5) gives 2.",
        "my_calculator(3) and current_time_zone(x) are not my tools.",
        'The tool list has "name": "calculator" in it.',
        "I'll call the current_time tool first, then the calculator.",
        "<tool_call> blocks are not how I call tools.",
    ],
)
def test_mere_mentions_in_reasoning_are_not_calls(reasoning):
    assert tool_calls_in_reasoning(reasoning, OFFERED) == []


def test_only_offered_tools_are_reported():
    reasoning = '<tool_call>{"name": "web_search", "arguments": {}}</tool_call> calculator(1)'
    assert tool_calls_in_reasoning(reasoning, ["calculator"]) == ["calculator"]
    assert tool_calls_in_reasoning(reasoning, []) == []


def test_tool_names_with_regex_characters_are_matched_literally():
    assert tool_calls_in_reasoning("get-weather(city='Paris')", ["get-weather"]) == ["get-weather"]
    assert tool_calls_in_reasoning("getXweather(city='Paris')", ["get.weather"]) == []


def test_reasoning_detection_is_fast_on_long_text():
    reasoning = "Let me think about the calculator and the {name: current_time} idea. " * 5_000
    started = time.perf_counter()
    assert tool_calls_in_reasoning(reasoning, OFFERED) == []
    assert time.perf_counter() - started < 1

"""Sandboxed templating: rendering, typed single expressions, escapes that must fail."""

from __future__ import annotations

import pytest

from promptlooper.sweeps.engine.templating import (
    TemplateError,
    referenced_attributes,
    referenced_names,
    render,
    render_value,
)


@pytest.mark.parametrize(
    ("template", "context", "expected"),
    [
        ("Hello {{ name }}!", {"name": "world"}, "Hello world!"),
        (
            "Summarize: {{ prev_output }}",
            {"prev_output": "The quick fox"},
            "Summarize: The quick fox",
        ),
        ("Static prompt", {}, "Static prompt"),
        ("Model: {{ config.model }}", {"config": {"model": "gpt-4"}}, "Model: gpt-4"),
        (
            "{% if input %}Input: {{ input }}{% else %}No input{% endif %}",
            {"input": "x"},
            "Input: x",
        ),
        (
            "Stage 0 said: {{ stages[0].output }}",
            {"stages": [{"output": "hi"}]},
            "Stage 0 said: hi",
        ),
    ],
)
def test_render(template: str, context: dict, expected: str):
    assert render(template, context) == expected


def test_a_single_expression_keeps_its_type():
    context = {"config": {"temperature": 0.7, "n": 3, "stop": ["\n"], "flag": False}}

    assert render_value("{{ config.temperature }}", context) == 0.7
    assert render_value("{{ config.n }}", context) == 3
    assert render_value("{{ config.stop }}", context) == ["\n"]
    assert render_value("{{ config.flag }}", context) is False
    assert render_value({"t": "{{ config.temperature }}"}, context) == {"t": 0.7}
    assert render_value("t={{ config.temperature }}", context) == "t=0.7"
    assert render_value(0.2, context) == 0.2


def test_undefined_variables_fail_clearly():
    with pytest.raises(TemplateError, match="undefined template variable"):
        render("Hello {{ nobody }}", {})
    with pytest.raises(TemplateError, match="undefined template variable"):
        render_value("{{ config.missing }}", {"config": {}})


def test_syntax_errors_name_the_line():
    with pytest.raises(TemplateError, match="line 2"):
        render("fine\n{% if %}", {})


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ config.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{% for c in ''.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ config.update({'x': 1}) }}",
    ],
)
def test_sandbox_escapes_fail(escape: str):
    with pytest.raises(TemplateError, match=r"sandbox|undefined"):
        render(escape, {"config": {"a": 1}})
    with pytest.raises(TemplateError):
        render_value(escape, {"config": {"a": 1}})


def test_referenced_names_and_attributes():
    source = (
        "{{ config.model }} {{ config['prompt'] }} {{ input }} {% for x in items %}{% endfor %}"
    )
    assert referenced_names(source) == {"config", "input", "items"}
    assert referenced_attributes(source, "config") == {"model", "prompt"}

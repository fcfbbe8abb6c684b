"""Tests for the sandboxed renderer: behaviour, resource bombs and sandbox escapes.

Every bomb must end with a 422-class error well inside ``TIMEOUT + 1 s`` without growing the
process's peak memory by more than a few hundred megabytes; every escape must fail without
the planted secret reaching the output or the error message.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from prompt_ledger.errors import (
    InvalidTemplate,
    PromptLedgerError,
    PromptTooLarge,
    RenderError,
    ValidationFailed,
)
from prompt_ledger.services.rendering import (
    MAX_RENDERED_BYTES,
    MAX_TEMPLATE_BYTES,
    budget,
    compiling,
    render,
    render_async,
    template_variables,
)

TIMEOUT = 0.3
SLACK = 0.5  # allowed overrun past TIMEOUT; the brief allows up to 1 s
MAX_PEAK_GROWTH_MB = 300
SECRET = "s3cr3t-sandbox-canary-7f3a"


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _render(source: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> str:
    return render(source, variables or {}, timeout_s=kwargs.pop("timeout_s", TIMEOUT), **kwargs)


@contextmanager
def _bounded() -> Iterator[None]:
    """Fail if the block ran past TIMEOUT + SLACK or grew the peak RSS by too much."""
    peak_before = _peak_rss_mb()
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    growth = _peak_rss_mb() - peak_before
    assert elapsed < TIMEOUT + SLACK, f"took {elapsed:.2f} s"
    assert growth < MAX_PEAK_GROWTH_MB, f"peak RSS grew by {growth:.0f} MB"


def _assert_422(exc: PromptLedgerError) -> None:
    assert exc.status == 422
    assert exc.code in {"render_error", "prompt_too_large", "invalid_template", "validation_error"}


class TestValidate:
    def test_returns_sorted_undeclared_variables(self) -> None:
        source = (
            "{{ b }} {{ a.name }} {% set c = 1 %}{{ c }}"
            "{% for i in items %}{{ i }}{{ loop.index }}{% endfor %}{{ range(2)|list }}"
        )
        assert template_variables(source) == ["a", "b", "items"]

    def test_plain_text_has_no_variables(self) -> None:
        assert template_variables("Just text.") == []

    def test_syntax_error_names_line_and_problem(self) -> None:
        with pytest.raises(InvalidTemplate) as info:
            template_variables("line one\nline two {{ name ")
        assert "line 2" in info.value.message
        assert info.value.details["line"] == 2

    def test_unknown_tag_is_invalid(self) -> None:
        with pytest.raises(InvalidTemplate, match="line 1"):
            template_variables("{% frobnicate %}")

    def test_unknown_filter_is_invalid_at_save_time(self) -> None:
        with pytest.raises(InvalidTemplate, match="nosuchfilter"):
            template_variables("{{ x|nosuchfilter }}")

    def test_urlize_is_not_offered(self) -> None:
        with pytest.raises(InvalidTemplate, match="urlize"):
            template_variables("{{ x|urlize }}")

    @pytest.mark.parametrize(
        "source",
        [
            "{% include 'other' %}",
            "{% extends 'base' %}",
            "{% import 'macros' as m %}",
            "{% from 'macros' import m %}",
            "{% include '/etc/passwd' %}",
        ],
    )
    def test_template_loading_tags_are_rejected(self, source: str) -> None:
        with pytest.raises(InvalidTemplate, match="not supported"):
            template_variables(source)
        with pytest.raises(InvalidTemplate):
            _render(source)

    def test_nul_in_source_is_validation_error(self) -> None:
        with pytest.raises(ValidationFailed, match="NUL"):
            template_variables("Hello\x00")
        with pytest.raises(ValidationFailed, match="NUL"):
            _render("Hello\x00")

    def test_oversized_source_is_rejected(self) -> None:
        source = "x" * (MAX_TEMPLATE_BYTES + 1)
        with pytest.raises(InvalidTemplate) as info:
            template_variables(source)
        assert info.value.details["limit"] == MAX_TEMPLATE_BYTES

    def test_too_many_tags_is_rejected(self) -> None:
        # Compile time follows the number of tags, not the length of the text.
        with pytest.raises(InvalidTemplate) as info:
            template_variables("{{ x }}" * 5001)
        assert info.value.details["limit_tags"] == 5000
        assert template_variables("{{ x }}" * 50 + "static text " * 10_000) == ["x"]

    def test_cache_is_bounded_by_weight(self) -> None:
        cache = compiling._TemplateCache(max_entries=100, max_weight=10_000)
        for i in range(50):
            cache.get(f"{{{{ x }}}} {i} " + "pad" * 100)
        assert cache.weight <= 10_000
        assert cache.misses == 50

    def test_unpaired_surrogate_is_validation_error(self) -> None:
        with pytest.raises(ValidationFailed, match="surrogate"):
            template_variables("bad \ud800")

    @pytest.mark.parametrize(
        "source",
        [
            "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",  # parser recursion
            "{% for a in b %}" * 30 + "{% endfor %}" * 30,  # Python's nested-block limit
            "{{ 1" + "0" * 5000 + " }}",  # int literal past Python's digit limit
        ],
        ids=["deep-parens", "deep-loops", "huge-int-literal"],
    )
    def test_pathological_sources_are_invalid_not_crashes(self, source: str) -> None:
        with pytest.raises(InvalidTemplate):
            template_variables(source)


class TestRender:
    def test_substitutes_variables(self) -> None:
        assert _render("Hello {{ name }}!", {"name": "Ada"}) == "Hello Ada!"

    def test_missing_variable_names_it(self) -> None:
        with pytest.raises(RenderError) as info:
            _render("Hi {{ first }} {{ last }}", {"first": "Ada"})
        assert "'last'" in info.value.message
        assert info.value.details == {"variable": "last"}

    def test_missing_variable_in_condition_and_loop(self) -> None:
        with pytest.raises(RenderError) as info:
            _render("{% if flag %}x{% endif %}")
        assert info.value.details == {"variable": "flag"}
        with pytest.raises(RenderError) as info:
            _render("{% for i in items %}{{ i }}{% endfor %}")
        assert info.value.details == {"variable": "items"}

    def test_missing_variable_inside_a_container_is_not_printed(self) -> None:
        with pytest.raises(RenderError) as info:
            _render("{{ [name, 1] }}")
        assert info.value.details == {"variable": "name"}

    def test_missing_attribute_is_render_error(self) -> None:
        with pytest.raises(RenderError) as info:
            _render("line\n{{ user.email }}", {"user": {"name": "Ada"}})
        assert "email" in info.value.message
        assert info.value.details["line"] == 2

    def test_optional_variables_can_be_tested(self) -> None:
        source = "{% if x is defined %}{{ x }}{% else %}none{% endif %}|{{ y|default('d') }}"
        assert _render(source) == "none|d"
        assert _render(source, {"x": 1, "y": 2}) == "1|2"

    def test_no_autoescape_and_text_kept_verbatim(self) -> None:
        assert _render("<b>{{ x }}</b>\n", {"x": "<i>&"}) == "<b><i>&</b>\n"

    def test_common_template_features(self) -> None:
        source = (
            "{% macro item(i) %}- {{ i.name|title }} ({{ i.qty }}){% endmacro %}"
            "{% for i in items %}{{ item(i) }}{% if not loop.last %}\n{% endif %}{% endfor %}"
            "\n{{ items|map(attribute='name')|join(', ') }}"
            "|{{ items|sum(attribute='qty') }}|{{ items|length }}|{{ '%05.1f'|format(2.25) }}"
            "|{{ '{:>4}'.format('x') }}|{{ 'ab' ~ 1 }}|{{ [1, 2] + [3] }}|{{ 2 ** 10 }}"
        )
        items = [{"name": "apple pie", "qty": 2}, {"name": "tea", "qty": 3}]
        assert _render(source, {"items": items}) == (
            "- Apple Pie (2)\n- Tea (3)\napple pie, tea|5|2|002.2|   x|ab1|[1, 2, 3]|1024"
        )

    def test_blocks_filters_calls_and_namespaces(self) -> None:
        source = (
            "{% set ns = namespace(total=0) %}{% for n in nums %}{% set ns.total = ns.total + n %}"
            "{% endfor %}{{ ns.total }}|{% filter upper %}up {{ word }}{% endfilter %}"
            "|{% set block %}b{{ word }}{% endset %}{{ block }}"
            "|{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}in{% endcall %}"
            "|{% for n in tree recursive %}{{ n.v }}{{ loop(n.kids) }}{% endfor %}"
            "|{{ nums|batch(2)|list }}|{{ nums|tojson }}|{{ 'a\nb'|indent(2, true) }}"
        )
        tree = [{"v": 1, "kids": [{"v": 2, "kids": []}]}, {"v": 3, "kids": []}]
        assert _render(source, {"nums": [1, 2, 3], "word": "w", "tree": tree}) == (
            "6|UP W|bw|[in]|123|[[1, 2], [3]]|[1, 2, 3]|  a\n  b"
        )

    def test_output_limit_counts_utf8_bytes(self) -> None:
        assert _render("{{ s }}", {"s": "é" * 50}, max_bytes=100) == "é" * 50
        with pytest.raises(PromptTooLarge) as info:
            _render("{{ s }}", {"s": "é" * 51}, max_bytes=100)
        assert info.value.details["limit"] == 100
        assert info.value.details["size_at_least"] == 102

    def test_default_output_limit_is_200_kb(self) -> None:
        assert len(_render("{{ 'x' * n }}", {"n": MAX_RENDERED_BYTES})) == MAX_RENDERED_BYTES
        with pytest.raises(PromptTooLarge):
            _render("{{ 'x' * n }}", {"n": MAX_RENDERED_BYTES + 1})

    def test_output_limit_stops_streaming_early(self) -> None:
        started = time.monotonic()
        with pytest.raises(PromptTooLarge):
            _render("{% for i in range(100000) %}{{ row }}{% endfor %}", {"row": "y" * 1000})
        assert time.monotonic() - started < 0.1

    def test_nul_in_output_is_validation_error(self) -> None:
        with pytest.raises(ValidationFailed, match="NUL"):
            _render("{{ x }}", {"x": "a\x00b"})
        assert _render("{{ x|length }}", {"x": "a\x00b"}) == "3"

    def test_unpaired_surrogate_in_output_is_validation_error(self) -> None:
        with pytest.raises(ValidationFailed, match="surrogate"):
            _render("{{ x }}", {"x": "\udc80"})

    def test_runtime_errors_are_render_errors_with_line(self) -> None:
        with pytest.raises(RenderError) as info:
            _render("ok\n{{ 1 / 0 }}")
        assert "ZeroDivisionError" in info.value.message
        assert info.value.details["line"] == 2

    def test_caller_data_is_not_mutated(self) -> None:
        items = [1, 2]
        data = {"a": 1}
        with pytest.raises(RenderError):
            _render("{{ items.append(3) }}", {"items": items})
        with pytest.raises(RenderError):
            _render("{{ data.update(b=2) }}{{ data.clear() }}", {"data": data})
        assert items == [1, 2]
        assert data == {"a": 1}

    def test_compiled_templates_are_cached_and_cheap(self) -> None:
        source = "Hello {{ name }}! Cached."
        _render(source, {"name": "Ada"})
        hits = compiling._CACHE.hits
        runs = 2000
        started = time.perf_counter()
        for _ in range(runs):
            _render(source, {"name": "Ada"})
        per_render = (time.perf_counter() - started) / runs
        assert compiling._CACHE.hits >= hits + runs
        assert per_render < 200e-6, f"{per_render * 1e6:.0f} µs per render"

    def test_state_is_clean_after_errors(self) -> None:
        with pytest.raises(RenderError):
            _render(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
            )
        assert budget._tls.render is None
        assert _render("{{ 1 + 1 }}") == "2"


class TestAsync:
    async def test_render_async_matches_render(self) -> None:
        result = await render_async("Hi {{ n }}", {"n": "Bo"}, timeout_s=TIMEOUT)
        assert result == "Hi Bo"

    async def test_render_async_raises_domain_errors(self) -> None:
        with pytest.raises(RenderError) as info:
            await render_async("{{ missing }}", {}, timeout_s=TIMEOUT)
        assert info.value.details == {"variable": "missing"}
        with pytest.raises(PromptTooLarge):
            await render_async("{{ 'x' * 10**9 }}", {}, timeout_s=TIMEOUT)

    async def test_event_loop_keeps_running_during_a_slow_render(self) -> None:
        bomb = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        with pytest.raises(RenderError, match="longer than"):
            await render_async(bomb, {}, timeout_s=TIMEOUT)
        done.set()
        await task
        assert len(gaps) > 10
        assert max(gaps) < 0.1, f"event loop stalled {max(gaps):.3f} s"

    async def test_concurrent_renders(self) -> None:
        results = await asyncio.gather(
            *(render_async("{{ i * 2 }}", {"i": i}, timeout_s=TIMEOUT) for i in range(50))
        )
        assert results == [str(i * 2) for i in range(50)]


NS = "{% set ns = namespace(s='x') %}"
LOOP64 = "{% for i in range(64) %}"
BIG = "{% set b = 'x' * 100000 %}"

BOMBS: dict[str, str] = {
    # string, list and number growth
    "str-repeat": "{{ 'x' * 10**9 }}",
    "str-repeat-reversed": "{{ 10**9 * 'x' }}",
    "list-repeat": "{{ [1] * 10**9 }}",
    "pow-tower": "{{ 9**(9**9) }}",
    "big-int": "{{ 10**100000 }}",
    "int-squaring": "{% set ns = namespace(n=10**100) %}{% for i in range(64) %}"
    "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
    "range": "{% for i in range(10**9) %}{% endfor %}",
    # namespace doubling, by every way of joining text
    "ns-concat": NS + LOOP64 + "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "ns-plus": NS + LOOP64 + "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    "ns-times": NS + LOOP64 + "{% set ns.s = ns.s * 2 %}{% endfor %}{{ ns.s|length }}",
    "ns-join": NS + LOOP64 + "{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}{{ ns.s|length }}",
    "ns-percent": NS + LOOP64 + "{% set ns.s = '%s%s' % (ns.s, ns.s) %}{% endfor %}",
    "ns-format": NS + LOOP64 + "{% set ns.s = '{0}{0}'.format(ns.s) %}{% endfor %}",
    "ns-replace": NS + LOOP64 + "{% set ns.s = ns.s|replace('x', 'xx') %}{% endfor %}",
    "ns-set-block": NS + LOOP64 + "{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}"
    "{% set ns.s = t %}{% endfor %}",
    "ns-macro": "{% macro d(s) %}{{ s }}{{ s }}{% endmacro %}"
    + NS
    + LOOP64
    + "{% set ns.s = d(ns.s) %}{% endfor %}",
    "ns-list-doubling": "{% set ns = namespace(l=[1]) %}" + LOOP64 + "{% set ns.l = ns.l + ns.l %}"
    "{% endfor %}{{ ns.l|length }}",
    # amplifying filters
    "center": "{{ 'x'|center(10**9) }}",
    "indent-width": "{{ 'a\nb'|indent(10**9) }}",
    "indent-string": "{{ ('a\n' * 1000)|indent('y' * 100000) }}",
    "join": BIG + "{{ ([b] * 1000)|join }}",
    "join-list": BIG + "{{ ([b] * 1000)|join(b) }}",
    "replace-empty": "{{ ('x' * 100000)|replace('', 'y' * 1000) }}",
    "wordwrap-wrapstring": "{{ ('a ' * 100000)|wordwrap(1, wrapstring='y' * 1000) }}",
    "format-width": "{{ '%1000000000s'|format('x') }}",
    "format-star": "{{ '%*d'|format(10**9, 1) }}",
    "format-repeat": "{{ ('%(a)s' * 1000)|format(a='x' * 100000) }}",
    "batch-fill": "{{ [1]|batch(10**9, 'x')|list }}",
    "slice-count": "{{ [1]|slice(10**9)|list }}",
    "round-ceil": "{{ 1.5|round(10**9, 'ceil') }}",
    "round-int": "{{ 5|round(-10**9) }}",
    "sum-lists": "{{ ([[1]] * 100000)|sum(start=[]) }}",
    "tojson-indent": "{{ 'x'|tojson(indent=10**9) }}",
    "map-center": "{{ range(100000)|map('center', 1000000)|list|length }}",
    # aliasing: [b] * n is n pointers, its text is n copies
    "alias-output": BIG + "{{ [b] * 1000 }}",
    "alias-string": BIG + "{{ ([b] * 1000)|string|length }}",
    "alias-tojson": BIG + "{{ ([b] * 1000)|tojson|length }}",
    "alias-pprint": BIG + "{{ ([b] * 1000)|pprint|length }}",
    "alias-concat": BIG + "{{ ([b] * 1000) ~ '' }}",
    "alias-upper": BIG + "{{ ([b] * 1000)|upper|length }}",
    "alias-literal": BIG + "{{ [" + "b," * 2000 + "]|e }}",
    "alias-error-message": BIG + "{{ [1].index([b] * 1000) }}",
    # str methods
    "str-ljust": "{{ 'x'.ljust(10**9) }}",
    "str-zfill": "{{ '1'.zfill(10**9) }}",
    "str-expandtabs": "{{ '\t\t'.expandtabs(10**9) }}",
    "str-join": "{{ ','.join(['x' * 100000] * 100) }}",
    "str-replace": "{{ ('x' * 100000).replace('x', 'y' * 100) }}",
    "str-translate": "{{ ('x' * 1000).translate({120: 'y' * 100000}) }}",
    "str-translate-list": "{{ ('x' * 1000).translate(['y' * 100000] * 200) }}",
    "str-split-huge": "{{ ('ab ' * 400000).split()|length }}",
    "int-to-bytes": "{{ (1).to_bytes(10**9, 'big') }}",
    "punycode": "{{ ('é' * 50000).encode('punycode') }}",
    "format-pad": "{{ '{:>1000000000}'.format(1) }}",
    "format-precision": "{{ '{:.1000000000f}'.format(1.5) }}",
    "format-nested-width": "{{ '{0:{1}}'.format(1, 10**9) }}",
    "format-many-fields": "{{ ('{0}' * 100000).format('x' * 100) }}",
    "percent-star": "{{ '%.*f' % (10**9, 1.5) }}",
    # loops and recursion
    "nested-2": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested-2-output": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
    "{% endfor %}",
    "nested-3": "{% for i in range(100000) %}{% for j in range(100000) %}"
    "{% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}",
    "nested-3-output": "{% for i in range(100000) %}{% for j in range(100000) %}"
    "{% for k in range(100000) %}{{ k }}{% endfor %}{% endfor %}{% endfor %}",
    "nested-in-buffer": "{% set x %}{% for i in range(100000) %}{% for j in range(100000) %}a"
    "{% endfor %}{% endfor %}{% endset %}{{ x|length }}",
    "macro-recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "macro-fanout": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
    "{% endmacro %}{{ f(60) }}",
    "macro-fanout-big-leaves": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}"
    "{% else %}{{ 'x' * 100000 }}{% endif %}{% endmacro %}{{ f(30)|length }}",
    "recursive-loop": "{% for i in [1] recursive %}{{ loop([1, 2]) }}{% endfor %}",
    "loop-over-variable-list": "{% for a in items %}{% for b in items %}{% for c in items %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    # work between hooks: comparisons are ticked, textwrap needs the watchdog
    "wordwrap-long": "{% set s = 'ab ' * 340000 %}{{ s|wordwrap(1)|length }}",
    "many-big-comparisons": "{% if a == b %}{% endif %}" * 2000,
}


class TestLimits:
    @pytest.mark.parametrize("source", BOMBS.values(), ids=BOMBS.keys())
    def test_bomb_ends_quickly_with_422(self, source: str) -> None:
        variables: dict[str, Any] = {"items": list(range(2000))}
        if "a == b" in source:  # equal 16 MB strings: ~0.4 ms per comparison
            variables = {"a": "q" * 16_000_000, "b": "q" * 16_000_000}
        template_variables(source)  # compile (cached) outside the clock, as a saved prompt is
        with _bounded(), pytest.raises(PromptLedgerError) as info:
            _render(source, variables)
        _assert_422(info.value)

    def test_left_associative_power_is_harmless(self) -> None:
        # Jinja parses 9**9**9 as (9**9)**9: 78 digits, so it renders instead of exploding.
        assert _render("{{ 9**9**9 }}") == str((9**9) ** 9)

    def test_timeout_message_and_precision(self) -> None:
        started = time.monotonic()
        with pytest.raises(RenderError) as info:
            _render(BOMBS["nested-2"], timeout_s=0.2)
        elapsed = time.monotonic() - started
        assert "longer than 0.2 s" in info.value.message
        assert info.value.details["timeout_s"] == 0.2
        assert 0.2 <= elapsed < 0.45

    def test_size_errors_say_what_the_limit_is(self) -> None:
        with pytest.raises(PromptTooLarge) as info:
            _render(BOMBS["str-repeat"])
        assert info.value.details["size"] == 10**9
        assert info.value.details["limit"] < 10**7

    def test_values_under_the_caps_still_work(self) -> None:
        source = (
            "{{ ('ab' * 200000)|replace('a', 'cc')|length }}|{{ ('x' * 1000)|center(5000)|length }}"
            "|{{ (10**300 * 10**300)|string|length }}|{{ ([0] * 100000)|length }}"
            "|{{ range(100000)|sum }}"
        )
        assert _render(source) == "600000|5000|601|100000|4999950000"

    def test_accumulation_idioms_work_at_normal_sizes(self) -> None:
        source = (
            "{% set ns = namespace(l=[], s='') %}{% for i in range(2000) %}"
            "{% set ns.l = ns.l + [i] %}{% set ns.s = ns.s ~ 'line ' ~ i ~ '\n' %}{% endfor %}"
            "{{ ns.l|length }} {{ ns.s|length }}"
        )
        assert _render(source) == "2000 18890"

    def test_legitimate_loops_finish_within_the_timeout(self) -> None:
        source = "{% for i in range(20000) %}{% if i % 1000 == 0 %}{{ i }},{% endif %}{% endfor %}"
        assert _render(source).startswith("0,1000,2000,")

    def test_large_variables_can_be_read_but_not_amplified(self) -> None:
        doc = "word " * 600_000  # 3 MB, past the per-value cap
        assert _render("{{ doc|length }} {{ doc[:9] }} {{ doc|truncate(9) }}", {"doc": doc}) == (
            "3000000 word word word..."
        )
        with pytest.raises(PromptTooLarge):
            _render("{{ doc|replace('w', 'ww')|length }}", {"doc": doc})


class TestSandboxEscapes:
    @pytest.fixture(autouse=True)
    def _secret(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PL_SANDBOX_CANARY", SECRET)

    @pytest.mark.parametrize(
        "source",
        [
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "{{ ().__class__.__base__.__subclasses__() }}",
            "{{ [].__class__.__base__.__subclasses__() }}",
            "{{ (1).__class__.__base__.__subclasses__() }}",
            "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
            "{{ cycler.__init__.__globals__.os.environ }}",
            "{{ joiner.__init__.__globals__.os.environ }}",
            "{{ namespace.__init__.__globals__['os'].environ }}",
            "{{ lipsum.__globals__['os'].environ }}",
            "{{ lipsum.__globals__.__builtins__.__import__('os').environ }}",
            "{{ range.__globals__['os'].environ }}",
            "{{ dict.mro()[-1].__subclasses__() }}",
            "{{ self._TemplateReference__context }}",
            "{{ self._TemplateReference__context.environment }}",
            "{{ self.__init__.__globals__['os'].environ }}",
            "{{ self.__dict__ }}",
            "{% macro m() %}{% endmacro %}{{ m._func.__globals__['os'].environ }}",
            "{% macro m() %}{% endmacro %}{{ m.__call__.__globals__ }}",
            "{% for x in [1] %}{{ loop.__class__.__init__.__globals__ }}{% endfor %}",
            "{{ x|attr('__class__')|attr('__base__')|attr('__subclasses__')() }}",
            "{{ x['__class__'] }}",
            "{{ [x]|map(attribute='__class__')|list }}",
            "{{ [x]|selectattr('__class__')|list }}",
            "{{ 'a'.__mul__(3) }}",
            # str.format reaching attributes (sandboxed formatter)
            "{{ '{0.__class__.__mro__}'.format(x) }}",
            "{{ '{0[__class__]}'.format(x) }}",
            "{{ '{x.__init__.__globals__[os].environ}'.format_map({'x': cycler}) }}",
            "{{ ('{0.__class__}'|safe).format(x) }}",
            # CVE-2025-27516: |attr('format') used to return the unsandboxed str.format
            "{{ ('{0.__init__.__globals__[os].environ}'|attr('format'))(cycler) }}",
            "{% set f = '{0.__init__.__globals__}'|attr('format') %}{{ f(joiner) }}",
            "{{ ('{x.__init__.__globals__}'|attr('format_map'))({'x': cycler}) }}",
            # CVE-2024-56326: keep a format method and have something else call it
            "{% set f = '{0.__init__.__globals__}'.format %}{{ [cycler]|map(f)|list }}",
            "{% set f = '{0.__init__.__globals__}'.format %}{{ f.__self__ }}{{ f(cycler) }}",
            # names a web framework would inject
            "{{ config.items() }}",
            "{{ request.application.__globals__ }}",
            "{{ url_for.__globals__['os'].environ }}",
            "{{ get_flashed_messages.__globals__ }}",
            "{{ settings.SECRET_KEY }}",
        ],
    )
    def test_escape_fails_without_leaking(self, source: str) -> None:
        with pytest.raises(PromptLedgerError) as info:
            _render(source, {"x": "text"})
        _assert_422(info.value)
        assert SECRET not in info.value.message
        assert SECRET not in repr(info.value.details)

    def test_unsafe_access_reports_a_sandbox_violation(self) -> None:
        with pytest.raises(RenderError, match="sandbox forbids") as info:
            _render("{{ ''.__class__ }}")
        assert info.value.details["error"] == "security"

    def test_secret_variables_are_only_what_the_caller_passed(self) -> None:
        assert _render("{{ x }}", {"x": "ok"}) == "ok"
        with pytest.raises(RenderError):
            _render("{{ environ }}{{ os }}")


class TestWatchdog:
    def test_interrupts_hookless_python_code(self) -> None:
        started = time.monotonic()
        with pytest.raises(RenderError, match="longer than"):
            _render(BOMBS["wordwrap-long"], timeout_s=0.1)
        assert time.monotonic() - started < 0.1 + 0.3

    def test_no_stray_exception_after_interrupted_renders(self) -> None:
        for _ in range(3):
            with pytest.raises(RenderError):
                _render(BOMBS["wordwrap-long"], timeout_s=0.02)
            # Any pending asynchronous exception would fire inside this busy loop.
            deadline = time.monotonic() + 0.1
            spins = 0
            while time.monotonic() < deadline:
                spins += 1
            assert spins > 0
        assert _render("{{ 'still' }} fine") == "still fine"

    def test_only_the_overdue_thread_is_interrupted(self) -> None:
        errors: list[BaseException] = []
        results: list[str] = []

        def quick() -> None:
            try:
                for _ in range(200):
                    results.append(_render("{{ n }}", {"n": 1}))
                    time.sleep(0.001)
            except BaseException as exc:  # pragma: no cover - the assertion reports it
                errors.append(exc)

        worker = threading.Thread(target=quick)
        worker.start()
        with pytest.raises(RenderError):
            _render(BOMBS["wordwrap-long"], timeout_s=0.05)
        worker.join()
        assert errors == []
        assert results == ["1"] * 200

"""Mermaid drawings of trees: core kinds, unknown kinds, the drawing hook."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Never, final, get_args

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Result, Success

from combinators import (
    Agent,
    Block,
    MermaidGraph,
    Priority,
    agent,
    collect,
    each,
    first_success,
    pure,
    succeed,
    to_mermaid,
    vote,
)
from combinators.testing import TreeKind, agent_trees
from observe_trees import leaf_count, trees


@agent
async def fetch(symbol: str) -> Result[int, str]:
    return Success(len(symbol))


@agent
async def cache(symbol: str) -> Result[int, str]:
    return Success(0)


def double(x: int) -> int:
    return x * 2


def label(x: int) -> str:
    return str(x)


def test_core_kinds_drawing() -> None:
    tree = (
        fetch.timeout(2).retry(3).fallback(cache)
        >> (pure(double) | pure(label).limit(2)).named("analyze")
        >> pure(str).transform(str.upper).priority(Priority.HIGH)
    ).named("pipeline")
    assert to_mermaid(tree) == (
        "flowchart LR\n"
        '  subgraph s1["pipeline"]\n'
        '    subgraph s2["retry up to 3x"]\n'
        '      subgraph s3["timeout 2s"]\n'
        '        n4["fetch"]\n'
        "      end\n"
        "    end\n"
        '    n5["cache"]\n'
        '    subgraph s6["analyze"]\n'
        '      n7["double"]\n'
        '      subgraph s8["limit 2"]\n'
        '        n9["label"]\n'
        "      end\n"
        "    end\n"
        '    subgraph s10["priority HIGH"]\n'
        '      n11["str"]\n'
        '      n12[/"transform: upper"/]\n'
        "    end\n"
        "  end\n"
        '  n4 -. "on failure" .-> n5\n'
        "  n4 --> n7\n"
        "  n4 --> n9\n"
        "  n5 --> n7\n"
        "  n5 --> n9\n"
        "  n11 --> n12\n"
        "  n7 --> n11\n"
        "  n9 --> n11\n"
    )


def test_error_handlers_and_constants() -> None:
    text = to_mermaid(fetch.map_error(len).recover(lambda n: -1) >> succeed("done"), direction="TB")
    assert text == (
        "flowchart TB\n"
        '  n1["fetch"]\n'
        '  n2[/"map_error: len"/]\n'
        '  n3[/"recover: lambda"/]\n'
        '  n4(["succeed"])\n'
        '  n1 -. "on failure" .-> n2\n'
        '  n2 -. "on failure" .-> n3\n'
        "  n1 --> n4\n"
        "  n3 --> n4\n"
    )


def test_fanout_kinds_are_drawn_from_kind_name_and_children() -> None:
    text = to_mermaid(each(fetch) >> pure(len))
    text += to_mermaid(collect(fetch | cache) | first_success(fetch, cache) | vote(fetch, cache, fetch))
    for title in ('"each"', '"collect"', '"first_success"', '"vote"', '"parallel"'):
        assert f"[{title}]" in text, title
    assert text.count('["fetch"]') == 5


@final
@attrs.frozen(eq=False, repr=False)
class Twice(Agent[int, int, Never]):
    """A node kind the drawing module does not know."""

    inner: Agent[int, int, Never]
    kind: ClassVar[str] = "twice"


@final
@attrs.frozen(eq=False, repr=False)
class Loop(Agent[int, int, Never]):
    """A node kind that draws itself with the ``_mermaid`` hook."""

    body: Agent[int, int, Never]
    kind: ClassVar[str] = "loop"

    def _mermaid(self, graph: MermaidGraph) -> Block:
        with graph.subgraph(f"loop {self.name}"):
            body = graph.draw(self.body)
            check = graph.node("again?", "diamond")
        graph.link(body, Block((check,), (check,)))
        for entry in body.entries:
            graph.edge(check, entry, "yes", "thick")
        return Block(body.entries, (check,))


def test_unknown_kind_is_drawn_generically() -> None:
    assert to_mermaid(Twice(pure(double)).named("x2")) == (
        'flowchart LR\n  subgraph s1["twice: x2"]\n    n2["double"]\n  end\n'
    )
    assert to_mermaid(Twice(pure(double))).startswith('flowchart LR\n  subgraph s1["twice"]')


def test_a_node_class_can_draw_itself() -> None:
    text = to_mermaid(pure(double) >> Loop(pure(double).named("step")))
    assert 'n4{"again?"}' in text
    assert '  n3 --> n4\n' in text and '  n4 == "yes" ==> n3\n' in text
    assert '  n1 --> n3\n' in text


def test_labels_are_quoted() -> None:
    text = to_mermaid(pure(double).named('say "hi"'))
    assert '["say #quot;hi#quot;"]' in text


def test_backticks_are_escaped() -> None:
    # A quoted label starting with a backtick is a Markdown string to Mermaid,
    # which must end with one too: the parser rejects `n1["`x"]`.
    assert to_mermaid(pure(double).named("`x")) == 'flowchart LR\n  n1["#96;x"]\n'
    text = to_mermaid((pure(double) >> pure(label)).named("`group`").timeout(1).named("`t"))
    assert 'subgraph s1["#96;t: timeout 1s"]' in text
    assert 'subgraph s2["#96;group#96;"]' in text
    assert "`" not in text


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=8).filter(lambda t: "/" not in t and t.strip() == t and "\n" not in t))
def test_any_name_gives_a_label_mermaid_reads_as_plain_text(name: str) -> None:
    for tree in (pure(double).named(name), (pure(double) >> pure(label)).named(name)):
        for quoted in re.findall(r'\["([^"]*)"\]', to_mermaid(tree)):
            assert not quoted.startswith("`") and '"' not in quoted


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="expects an Agent"):
        to_mermaid(double)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="direction"):
        to_mermaid(pure(double), direction="UP")


@settings(max_examples=200, deadline=None)
@given(trees)
def test_generated_trees_draw_every_leaf_once(tree: Agent[Any, Any, Any]) -> None:
    text = to_mermaid(tree)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    declared = set(re.findall(r"^\s*(n\d+)[\[\(\{]", text, re.M))
    used = set(re.findall(r"\b(n\d+)\b", "\n".join(ln for ln in lines if "-->" in ln or ".->" in ln or "==>" in ln)))
    assert used <= declared
    assert sum(1 for ln in lines if ln.strip().startswith("subgraph ")) == sum(1 for ln in lines if ln.strip() == "end")
    labels = re.findall(r'n\d+\["(l\d+|root)"\]', text)
    assert len(labels) == len(set(labels)) == leaf_count(tree)


@settings(max_examples=100, deadline=None)
@given(agent_trees(max_leaves=8, kinds=get_args(TreeKind), max_width=3))
def test_trees_of_every_kind_draw_every_leaf_once(tree: Agent[Any, Any, Any]) -> None:
    """Choices, loops, fan-outs, races and budgets too (a bind's options are chosen at run time: not drawn)."""
    text = to_mermaid(tree)
    lines = text.splitlines()
    declared = set(re.findall(r"^\s*(n\d+)[\[\(\{]", text, re.M))
    used = set(re.findall(r"\b(n\d+)\b", "\n".join(ln for ln in lines if "-->" in ln or ".->" in ln or "==>" in ln)))
    assert used <= declared
    assert sum(1 for ln in lines if ln.strip().startswith("subgraph ")) == sum(1 for ln in lines if ln.strip() == "end")
    labels = re.findall(r'n\d+\["(leaf\d+)"\]', text)
    assert sorted(labels) == sorted(node.name for node in tree.walk() if node.kind == "leaf" and node.name != "copies")

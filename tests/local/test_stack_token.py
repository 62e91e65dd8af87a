"""The local stack's operator token can always be passed as `ota --token T`."""

from __future__ import annotations

import pytest

from cli.main import build_parser
from local.stack import operator_token


@pytest.mark.parametrize("drawn", [["abc"], ["-ab", "--c", "_ok"], ["-x", "y-"]])
def test_the_token_never_starts_with_a_dash(drawn: list[str]) -> None:
    draws = iter(drawn)
    token = operator_token(lambda _n: next(draws))
    assert token == next(t for t in drawn if not t.startswith("-"))
    assert build_parser().parse_args(["--token", token, "keys", "list"]).token == token


def test_a_real_token_is_long_and_random() -> None:
    tokens = {operator_token() for _ in range(200)}
    assert len(tokens) == 200 and all(len(t) >= 43 and not t.startswith("-") for t in tokens)

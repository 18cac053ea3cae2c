"""hotpath.bounded: a memo table never grows past its limit, and keeps what it was given."""

from __future__ import annotations

from hotpath.bounded import remember


def test_a_full_table_is_emptied_before_the_next_entry() -> None:
    table: dict[int, str] = {}
    for n in range(3):
        assert remember(table, n, f"v{n}", 3) == f"v{n}"
    assert table == {0: "v0", 1: "v1", 2: "v2"}
    assert remember(table, 3, "v3", 3) == "v3"
    assert table == {3: "v3"}


def test_replacing_a_key_below_the_limit_keeps_the_others() -> None:
    table = {"a": 1}
    remember(table, "a", 2, 4)
    remember(table, "b", 3, 4)
    assert table == {"a": 2, "b": 3}

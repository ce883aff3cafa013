"""DMS's table-mapping wildcards (AWS page "Wildcards in table mapping") and the mappings pg2rds writes,
read back with DMS's rules."""

import json

import pytest

from pg2rds.dms.table_mappings import table_mappings
from pg2rds.dms.wildcards import dms_literal, dms_matches, to_dms_pattern
from pg2rds.postgres.selection import TableName
from pg2rds.spec import TableRule, TableSelection
from pg2rds_emulator.standin_selection import selection_rules, selects


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        # % : zero or more characters
        ("%", "", True),
        ("%", "anything at all", True),
        ("TEST%", "TEST", True),
        ("TEST%", "TEST_T1", True),
        ("TEST%", "XTEST", False),
        ("%_log", "audit_log", True),
        # _ : a single character
        ("a_c", "abc", True),
        ("a_c", "a_c", True),
        ("a_c", "ac", False),
        ("a_c", "abbc", False),
        ("order_items", "orderXitems", True),
        # [_] : a literal underscore
        ("a[_]c", "a_c", True),
        ("a[_]c", "abc", False),
        ("order[_]items", "orderXitems", False),
        ("TEST[_]T%", "TEST_T", True),
        ("TEST[_]T%", "TEST_TABLE", True),
        ("TEST[_]T%", "TESTXT", False),
        # [ab] : a set of characters, 'a' or 'b'
        ("[ab]", "a", True),
        ("[ab]", "b", True),
        ("[ab]", "c", False),
        ("[ab]", "ab", False),
        ("t[ab]x", "tbx", True),
        # [a-d] : a range, 'a', 'b', 'c' or 'd'
        ("[a-d]", "a", True),
        ("[a-d]", "c", True),
        ("[a-d]", "d", True),
        ("[a-d]", "e", False),
        ("log_[0-9][0-9]", "log_07", True),
        ("log_[0-9][0-9]", "log_7a", False),
        # everything else is itself, whole-name matching, case-sensitive
        ("orders", "orders", True),
        ("orders", "Orders", False),
        ("orders", "orders2", False),
        ("a.b*c", "a.b*c", True),
        ("a.b*c", "aXbbc", False),
        ("[[]x", "[x", True),
        ("a[b", "a[b", True),  # no closing bracket: a literal '['
    ],
)
def test_dms_wildcards(pattern: str, name: str, matches: bool) -> None:
    assert dms_matches(pattern, name) is matches


@pytest.mark.parametrize(
    "name", ["order_items", "a[b]c", "[_]", "x__y", "Bestellungen Größe", 'Sales "EU"', "a-b", "]"]
)
def test_pg2rds_names_are_written_so_dms_matches_them_only(name: str) -> None:
    pattern = to_dms_pattern(name)
    assert dms_matches(pattern, name)
    lookalike = name.replace("_", "X").replace("[", "b") if ("_" in name or "[" in name) else name + "x"
    assert not dms_matches(pattern, lookalike)


def test_percent_stays_the_wildcard() -> None:
    assert to_dms_pattern("tmp_%") == "tmp[_]%"
    assert dms_matches(to_dms_pattern("tmp_%"), "tmp_2024")
    assert not dms_matches(to_dms_pattern("tmp_%"), "tmpX2024")
    with pytest.raises(ValueError, match="no escape"):
        dms_literal("100%_sure")


def test_the_mappings_dms_receives_select_what_pg2rds_selected() -> None:
    selection = TableSelection(include=[TableRule(schema="public", table="order_items")])
    rules = selection_rules(table_mappings(selection))

    assert selects(rules, TableName("public", "order_items"))
    assert not selects(rules, TableName("public", "orderXitems"))
    assert not selects(rules, TableName("public", "order_items2"))


def test_partitioned_parents_are_excluded_by_name() -> None:
    selection = TableSelection(
        include=[TableRule(schema="public", table="%")], exclude=[TableRule(schema="public", table="tmp_%")]
    )
    parents = [TableName("public", "payment"), TableName("public", "events_2024")]
    document = json.loads(table_mappings(selection, parents))

    assert [(r["rule-action"], r["object-locator"]) for r in document["rules"]] == [
        ("include", {"schema-name": "public", "table-name": "%"}),
        ("exclude", {"schema-name": "public", "table-name": "tmp[_]%"}),
        ("exclude", {"schema-name": "public", "table-name": "payment"}),
        ("exclude", {"schema-name": "public", "table-name": "events[_]2024"}),
    ]
    assert [r["rule-id"] for r in document["rules"]] == ["1", "2", "3", "4"]
    rules = selection_rules(document)
    assert not selects(rules, TableName("public", "payment"))
    assert not selects(rules, TableName("public", "events_2024"))
    assert selects(rules, TableName("public", "payment_p2022_01"))
    assert selects(rules, TableName("public", "events_2024_eu"))
    assert selects(rules, TableName("public", "tmpX"))  # only the literal tmp_ prefix is excluded
    assert not selects(rules, TableName("public", "tmp_x"))


def test_selection_rules_read_as_dms_reads_them() -> None:
    document = {
        "rules": [
            {"rule-type": "transformation", "rule-action": "convert-lowercase", "object-locator": {}},
            {
                "rule-type": "selection",
                "rule-action": "explicit",
                "object-locator": {"schema-name": "app", "table-name": "t_%"},
            },
            {"rule-type": "selection", "rule-action": "include", "object-locator": {"schema-name": "crm"}},
            {
                "rule-type": "selection",
                "rule-action": "include",
                "object-locator": {"schema-name": "%", "table-name": "%", "table-type": "view"},
            },
        ]
    }
    rules = selection_rules(document)

    assert selects(rules, TableName("app", "t_%"))  # explicit: the one table, wildcards literal
    assert not selects(rules, TableName("app", "t_x"))
    assert selects(rules, TableName("crm", "anything"))  # no table-name: every table of the schema
    assert not selects(rules, TableName("other", "x"))  # the view rule selects no table
    assert not selects([], TableName("app", "x"))  # no include rule: nothing

"""The spec's table selection as DMS table mappings, and back.

The round trip matters locally: the DMS stand-in reads the task's ``TableMappings`` exactly as DMS would,
so what it copies is decided by what we sent to DMS, not by the spec.
"""

import json

from pg2rds.spec import TableRule, TableSelection


def _rule(rule_id: int, action: str, rule: TableRule) -> dict:
    return {
        "rule-type": "selection",
        "rule-id": str(rule_id),
        "rule-name": f"{action}-{rule_id}",
        "object-locator": {"schema-name": rule.schema_name, "table-name": rule.table_name},
        "rule-action": action,
    }


def table_mappings(selection: TableSelection) -> str:
    """JSON for ``CreateReplicationTask(TableMappings=...)``."""
    rules = [_rule(i, "include", rule) for i, rule in enumerate(selection.include, start=1)]
    offset = len(rules)
    rules += [_rule(offset + i, "exclude", rule) for i, rule in enumerate(selection.exclude, start=1)]
    return json.dumps({"rules": rules}, ensure_ascii=False)


def selection_from_mappings(mappings: str) -> TableSelection:
    """The include/exclude selection rules of a DMS table-mappings document (other rule types ignored)."""
    include: list[TableRule] = []
    exclude: list[TableRule] = []
    for rule in json.loads(mappings).get("rules", []):
        if rule.get("rule-type") != "selection":
            continue
        locator = rule["object-locator"]
        parsed = TableRule(schema=locator["schema-name"], table=locator.get("table-name", "%"))
        (include if rule.get("rule-action") == "include" else exclude).append(parsed)
    return TableSelection(include=include or [TableRule()], exclude=exclude)

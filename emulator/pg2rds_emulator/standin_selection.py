"""Which tables a DMS task selects: the selection rules of its ``TableMappings``, read as DMS reads them.

The stand-in must not reuse pg2rds's own selection code, or a local run would agree with pg2rds whatever
pg2rds wrote to DMS. So it lists the source's tables and applies the rules with DMS's wildcards
(:func:`pg2rds.dms.wildcards.dms_matches`: ``%``, ``_``, ``[_]``, ``[ab]``, ``[a-d]``; AWS page
"Wildcards in table mapping"), and it selects what DMS selects from a PostgreSQL source:

- ordinary tables, leaf partitions and partitioned parents alike (AWS page "Using a PostgreSQL database
  as an AWS DMS source": selecting a parent as well as its partitions loads the partitions' rows twice);
- a table that some ``include`` (or ``explicit``) rule matches and no ``exclude`` rule matches (AWS page
  "Selection rules and actions": include ``%`` with exclude ``DMS%`` moves everything but ``DMS%``);
- ``explicit`` names one table, wildcards read literally; rules of ``table-type`` ``view`` select no
  table; a rule without ``table-name`` means every table of its schemas.
"""

import json
from dataclasses import dataclass
from typing import Any

from pg2rds.dms.wildcards import dms_matches
from pg2rds.postgres.selection import SYSTEM_SCHEMA_FILTER, TableName

#: Every relation a selection rule can reach: ordinary tables (``r``) and partitioned tables (``p``).
CANDIDATES_QUERY = f"""
SELECT n.nspname::text, c.relname::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND {SYSTEM_SCHEMA_FILTER}
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class SelectionRule:
    action: str  # "include" | "exclude" | "explicit"
    schema: str
    table: str

    def matches(self, name: TableName) -> bool:
        if self.action == "explicit":
            return (name.schema, name.table) == (self.schema, self.table)
        return dms_matches(self.schema, name.schema) and dms_matches(self.table, name.table)


def selection_rules(mappings: str | dict) -> list[SelectionRule]:
    """The table selection rules of a TableMappings document (other rule types do not select tables)."""
    document = json.loads(mappings) if isinstance(mappings, str) else mappings
    rules = []
    for rule in document.get("rules", []):
        if rule.get("rule-type") != "selection":
            continue
        locator = rule.get("object-locator") or {}
        if locator.get("table-type", "table") not in ("table", "all"):
            continue
        rules.append(
            SelectionRule(
                action=rule.get("rule-action", ""),
                schema=locator.get("schema-name", ""),
                table=locator.get("table-name", "%"),
            )
        )
    return rules


def selects(rules: list[SelectionRule], name: TableName) -> bool:
    included = any(rule.matches(name) for rule in rules if rule.action in ("include", "explicit"))
    return included and not any(rule.matches(name) for rule in rules if rule.action == "exclude")


def dms_selected_tables(conn: Any, mappings: str) -> list[TableName]:
    """The source's tables the mappings select, by DMS's rules, ordered by schema and name."""
    rules = selection_rules(mappings)
    with conn.cursor() as cur:
        cur.execute(CANDIDATES_QUERY)
        candidates = [TableName(schema, table) for schema, table in cur.fetchall()]
    return [name for name in candidates if selects(rules, name)]

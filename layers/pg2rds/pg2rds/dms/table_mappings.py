"""The spec's table selection as DMS table mappings that select exactly what pg2rds selected.

Two differences between pg2rds's rules and DMS's are closed here (AWS pages "Wildcards in table mapping"
and "Using a PostgreSQL database as an AWS DMS source"):

- DMS reads ``_`` as any one character and ``[...]`` as a set; pg2rds means both literally, so every
  pattern is written with them escaped (:func:`pg2rds.dms.wildcards.to_dms_pattern`). Unescaped,
  ``include public.order_items`` would also select ``public.orderXitems``, a table pg2rds never checked.
- DMS selects partitioned parents as well as their partitions, and for PostgreSQL → PostgreSQL that loads
  every row twice (once through the parent); pg2rds selects the leaf partitions, so each partitioned table
  the include rules reach is excluded by name.
"""

import json
from collections.abc import Sequence

from pg2rds.dms.wildcards import dms_literal, to_dms_pattern
from pg2rds.postgres.selection import TableName
from pg2rds.spec import TableSelection


def _rule(rule_id: int, action: str, schema_pattern: str, table_pattern: str) -> dict:
    return {
        "rule-type": "selection",
        "rule-id": str(rule_id),
        "rule-name": f"{action}-{rule_id}",
        "object-locator": {"schema-name": schema_pattern, "table-name": table_pattern},
        "rule-action": action,
    }


def table_mappings(selection: TableSelection, partitioned_parents: Sequence[TableName] = ()) -> str:
    """JSON for ``CreateReplicationTask(TableMappings=...)``.

    ``partitioned_parents`` are the partitioned tables on the source that the include rules reach
    (:func:`pg2rds.postgres.selection.partitioned_parents`); each gets an exclude rule naming it exactly.
    """
    locators = [
        ("include", to_dms_pattern(r.schema_name), to_dms_pattern(r.table_name)) for r in selection.include
    ]
    locators += [
        ("exclude", to_dms_pattern(r.schema_name), to_dms_pattern(r.table_name)) for r in selection.exclude
    ]
    locators += [("exclude", dms_literal(p.schema), dms_literal(p.table)) for p in partitioned_parents]
    rules = [_rule(i, *locator) for i, locator in enumerate(locators, start=1)]
    return json.dumps({"rules": rules}, ensure_ascii=False)

"""DMS's wildcards in table mappings, and how pg2rds writes a name so that DMS reads it literally.

AWS page "Wildcards in table mapping": in a selection rule's ``schema-name`` and ``table-name``, ``%``
matches zero or more characters, ``_`` a single character, ``[_]`` a literal underscore, ``[ab]`` one of
a set and ``[a-d]`` one of a range. pg2rds's spec is narrower on purpose: ``%`` is its only wildcard and
every other character is literal (``_`` is common in PostgreSQL names). So what pg2rds writes to DMS
escapes ``_`` and ``[`` as one-character sets (:func:`to_dms_pattern`), and DMS then selects exactly the
tables pg2rds selected, validated and will verify.

:func:`dms_matches` is DMS's side of that contract; the local DMS stand-in selects tables with it, so a
local run shows what DMS would select from the mappings it receives. What the page leaves open is decided
conservatively: matching is case-sensitive (PostgreSQL names are), ``^`` inside a set is an ordinary
member, and a ``[`` with no closing ``]`` is a literal ``[``.
"""

import re
from functools import lru_cache

#: Characters of a pg2rds name pattern that DMS would read as wildcards although pg2rds means them
#: literally (``%`` is a wildcard in both and stays as it is).
_LITERAL_IN_PG2RDS = {"_": "[_]", "[": "[[]"}


def to_dms_pattern(pg2rds_pattern: str) -> str:
    """A pg2rds rule (``%`` wildcard, all else literal) as the DMS pattern that matches the same names."""
    return "".join(_LITERAL_IN_PG2RDS.get(char, char) for char in pg2rds_pattern)


def dms_literal(name: str) -> str:
    """A DMS pattern matching exactly ``name`` (for names without ``%``, which no pattern can escape)."""
    if "%" in name:
        raise ValueError(f"DMS table mappings cannot name {name!r} literally: '%' has no escape")
    return to_dms_pattern(name)


def _set_to_regex(members: str) -> str:
    """``ab``, ``a-d``, ``_`` (the inside of ``[...]``) as a regex character class."""
    parts = []
    index = 0
    while index < len(members):
        if index + 2 < len(members) and members[index + 1] == "-":
            low, high = members[index], members[index + 2]
            parts.append(f"{re.escape(low)}-{re.escape(high)}" if low <= high else "(?!)")
            index += 3
        else:
            parts.append(re.escape(members[index]))
            index += 1
    return "[" + "".join(parts) + "]"


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    regex = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "%":
            regex.append(".*")
        elif char == "_":
            regex.append(".")
        elif char == "[":
            # the first member may be "]" itself, so the closing bracket is searched from the second
            close = pattern.find("]", index + 2)
            if close == -1:
                regex.append(re.escape(char))
            else:
                regex.append(_set_to_regex(pattern[index + 1 : close]))
                index = close
        else:
            regex.append(re.escape(char))
        index += 1
    return re.compile("".join(regex), re.DOTALL)


def dms_matches(pattern: str, name: str) -> bool:
    """Whether DMS's selection pattern ``pattern`` matches the whole of ``name``."""
    return _compile(pattern).fullmatch(name) is not None

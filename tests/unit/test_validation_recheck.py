"""A table DMS found different, re-validated at pg2rds's request, still differs until DMS says "Validated".

ReloadTables(validate-only) resets the table's failed records and starts its pass again; while that pass
runs the table reads "Pending records" with nothing failed, and the cutover used to be offered again
although the target had not been fixed (the stand-in test of an altered target caught the re-offer)."""

from pg2rds.dms import validation
from pg2rds.dms.validation import TableValidation


def test_a_table_rechecked_after_a_difference_differs_until_validated() -> None:
    revalidating = TableValidation("public", "items", "Pending records", pending=500)
    other = TableValidation("public", "orders", "Pending records", pending=3)
    fresh = validation.counts([revalidating, other])
    assert (fresh.failing_tables, fresh.pending_tables) == (0, 2)  # what DMS's figures alone say

    rechecked = validation.counts([revalidating, other], rechecking={"public.items"})
    assert (rechecked.failing_tables, rechecked.pending_tables) == (1, 1)

    fixed = TableValidation("public", "items", "Validated")
    assert validation.counts([fixed, other], rechecking={"public.items"}).failing_tables == 0

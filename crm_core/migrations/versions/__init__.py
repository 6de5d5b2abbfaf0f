"""Migration scripts (one module per revision; their names sort in order)."""

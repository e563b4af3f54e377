"""Stage 4: readings of the scores (grids, rankings, agreement)."""

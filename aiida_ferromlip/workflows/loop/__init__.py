"""The active-learning loop (label -> fit -> sample -> select -> judge) and the after-the-loop helpers."""

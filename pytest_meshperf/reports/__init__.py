"""Ways to show a run: the terminal matrix now; HTML reports attach here."""

"""DoRA Lab helpers."""

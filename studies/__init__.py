"""The one-off measurements behind design choices, each beside its result (NAME.py + NAME.md)."""

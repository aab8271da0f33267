"""Declared state: the TOML config store, its schema, and config -> graph."""

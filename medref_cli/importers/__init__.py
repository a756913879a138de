"""Readers of the raw dataset layouts found in the wild (SPEC 1.1, 1.2)."""

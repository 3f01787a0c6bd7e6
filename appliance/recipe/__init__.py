"""Recipes: TOML files describing an image (see loader.py for the format)."""

"""Blueprints: schema, loading with line numbers, validation against platform limits."""

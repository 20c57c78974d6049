"""Configuration files: loading and validation."""

"""Helpers of the hardening tests (OpenAPI, fuzzing, hostile input, hanging dependencies, soak)."""

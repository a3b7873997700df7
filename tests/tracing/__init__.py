"""The OTLP/HTTP receiver the tracing tests export to, and the tests that prove it."""

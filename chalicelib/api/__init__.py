"""HTTP side: Chalice blueprints turning requests into service calls, request parsing, the error mapping."""

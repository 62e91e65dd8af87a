"""The cloud side of the OTA service: domain core, use cases, adapters, HTTP routes and triggers."""

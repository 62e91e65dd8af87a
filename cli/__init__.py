"""`ota`: the operator command for the OTA service API."""

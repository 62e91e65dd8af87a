"""Adapters: the only place boto3, paho-mqtt and the filesystem are used. Clients are injected."""

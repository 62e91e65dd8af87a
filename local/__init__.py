"""The whole service on one machine: moto server, mosquitto with mTLS, the API and the bridge."""

"""A light fleet simulator: thousands of real MQTT device sessions speaking the OTA protocol in few processes.

- `register`: devices registered through the real API, each with its own EC P-256 key and certificate;
- `mqtt`: a minimal asyncio MQTT 3.1.1 client (TLS client auth, QoS 1, TCP_NODELAY);
- `device`: one device's protocol logic in block mode (docs/protocol.md), pure;
- `group`: the job document's group-delivery object (broadcast of blocks);
- `worker`: one process running many sessions; `runner`: the parent's view of the worker processes.
Used by bench.fleet (make bench-fleet) and tests/local/test_fleetsim.py. Not an agent: it installs
nothing and keeps no package bytes (a running hash), see device.py.
"""

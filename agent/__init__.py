"""The device agent `ota-agent`: receives, verifies and installs OTA packages and reports back.

Modules: config (TOML settings), machine (pure state machine tables), store (atomic persistence),
spool (in-place block file and bitmap), acks (ack policy), verify, installer, runtime (the engine and
its loop), downloading and steps (the per-state step functions), transport (interface) and
mqtt_transport (paho), download (URL mode), register (first-boot certificate), cli (entry point and
launcher), commanding (signed remote commands), autocheck (automatic updates), selfupdate (trial and
confirm of a new agent), history (history.txt).
"""

AGENT_VERSION = "1.0.0"

"""The contract shared by the cloud, the agent and the packager.

Manifest schema and canonical encoding, signatures, the package container, block frames, ack and
request codecs, topic names and versions. Depends only on the standard library, `cryptography` and
`zstandard`; never on chalicelib, agent or packager.
"""

FORMAT_VERSION = 1

"""The package creator `ota-pack`: keygen, build, delta, verify, inspect (see docs/package-format.md).

The pure work (manifests, compression, signing, deltas, verdicts) lives in `otaformat`; this package
adds the command line and the file system: reading sources and keys, writing packages and keys.
"""

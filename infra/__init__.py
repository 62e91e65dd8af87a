"""Deployment tooling for AWS: the stage definition (stage.py), the bundle build and its checks (package.py)."""

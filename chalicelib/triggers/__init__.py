"""Chalice blueprints for the SQS consumers and the schedule.

Each decorated handler is a chalice EventSourceHandler, callable directly as `handler(event, context)`
with the raw Lambda event dict; the local bridge calls them exactly like that.
"""

import importlib
import sys


def attach_app_middleware() -> None:
    """On AWS each trigger Lambda imports its handler module directly (Handler:
    chalicelib.triggers.<module>.<function>), so app.py, which registers the blueprints and with them the
    powertools middleware, would never run. Importing it here fixes that; when app.py is the one being
    imported (API Lambda, tests, local server) it is already in sys.modules and nothing happens."""
    if "app" in sys.modules:
        return
    try:
        importlib.import_module("app")
    except ModuleNotFoundError as err:  # e.g. a tool importing chalicelib without the project root on the path
        if err.name != "app":
            raise

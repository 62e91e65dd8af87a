"""Chalice blueprints for the SQS consumers and the schedule.

Each decorated handler is a chalice EventSourceHandler, callable directly as `handler(event, context)`
with the raw Lambda event dict; the local bridge calls them exactly like that.
"""

"""Use cases: plain functions taking ports (never boto3 or chalice), raising domain errors."""

"""The Celery side: `celery -A workers worker -Q openai` finds `app` here."""

from workers.celery import app

__all__ = ["app"]

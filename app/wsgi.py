"""WSGI entry point for gunicorn: `gunicorn -c python:app.gunicorn_conf app.wsgi:app`, what `simplecqrs api` runs."""
from . import api

app = api.create_app()

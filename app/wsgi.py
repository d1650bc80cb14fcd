"""WSGI entry point for gunicorn: `gunicorn -c python:app.gunicorn_conf app.wsgi:app`."""
from . import api

app = api.create_app()

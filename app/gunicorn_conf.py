"""gunicorn settings for the API, all from environment variables (app/config.py declares them).

    gunicorn -c python:app.gunicorn_conf 'app.wsgi:app'     (what `simplecqrs api` execs: app/cli.py)

No --preload: every worker imports the app after the fork, so its MySQL
connections are its own.  The outbox relay is a process of its own (app/relay/).
"""
import os
import shutil
import tempfile

from app.config import GunicornSettings

_settings = GunicornSettings()   # API_BIND and GUNICORN_*: app/config.py, VARIABLES
bind = _settings.bind
workers = _settings.workers
threads = _settings.threads
worker_class = _settings.worker_class
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = 5
accesslog = None  # the app logs requests as JSON; gunicorn's own access log would double them
errorlog = "-"
preload_app = False
# gunicorn 27's control socket defaults to ~/.gunicorn/gunicorn.ctl: shared by every instance of a
# user (tests run several) and unwritable in a read-only container.  Nothing here uses it.
control_socket_disable = True
# Bound request parsing: a client cannot make a worker buffer huge headers.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# Prometheus multiprocess mode: one directory per API instance, emptied at start.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"simplecqrs-metrics-{bind.replace(':', '_')}"))


def on_starting(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


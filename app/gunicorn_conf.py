"""gunicorn settings for the API, all from environment variables.

    gunicorn -c python:app.gunicorn_conf 'app.wsgi:app'

No --preload: every worker imports the app after the fork, so its MySQL
connections are its own.  The outbox relay is a process of its own (app/relay/).
"""
import os
import shutil
import tempfile

bind = os.environ.get("API_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# gthread: measured against sync processes and gevent (README, "What changed to get here"); sync is
# the other choice gunicorn ships without an extra package.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
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


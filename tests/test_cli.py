"""The one command line, `simplecqrs` (app/cli.py): its subcommands, their options, exit codes and help.

Pure logic, no store: each subcommand's function (`run` in its module) is replaced by a recorder, so
what is checked is the command line itself: every option reaches the function with its default or its
value, the function's return value is the exit code, a bad option exits 2 with a message that names it,
and a subcommand imports only its own module.  The image, the operator's children and its manifests
run these commands.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from app import cli

ROOT = Path(__file__).resolve().parents[1]
# subcommand -> the module whose run() does the work (imported only when the subcommand runs)
MODULES = {
    "relay": "app.relay.main",
    "consume": "consumer.main",
    "operator": "simplecqrs_operator.main",
    "audit": "app.audit",
    "rebuild-read-model": "app.readmodel.rebuild",
    "seed": "app.seed",
}
SUBCOMMANDS = ["api", *MODULES]    # and bench: a checkout's scripts/bench (test below)
# The environment the defaults of `operator` and `seed` read; cleared so the defaults are the documented ones.
DEFAULTS_ENV = ("WATCH_NAMESPACE", "SIMPLECQRS_OPERATOR_LEASE", "SIMPLECQRS_OPERATOR_LEASE_NAMESPACE",
                "SIMPLECQRS_OPERATOR_STANDALONE", "SIMPLECQRS_OPERATOR_LIVENESS", "API_URL", "API_HOST_HEADER")


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli.simplecqrs, list(args), prog_name="simplecqrs", env=env)


@pytest.fixture
def clean_env(monkeypatch):
    for name in DEFAULTS_ENV:
        monkeypatch.delenv(name, raising=False)


class Recorder:
    """Stands in for a module's run(): records its keyword arguments, returns the exit code it is given."""

    def __init__(self, code: int = 0):
        self.code, self.calls = code, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.code


@pytest.fixture
def recorded(monkeypatch):
    """recorded(subcommand, code) -> the Recorder now standing in for that subcommand's run()."""

    def replace(subcommand: str, code: int = 0) -> Recorder:
        rec = Recorder(code)
        monkeypatch.setattr(importlib.import_module(MODULES[subcommand]), "run", rec)
        return rec

    return replace


def signature_defaults(subcommand: str) -> dict:
    """The defaults of the subcommand's run(), read before a test replaces it."""
    run = importlib.import_module(MODULES[subcommand]).run
    assert not isinstance(run, Recorder)
    return {name: p.default for name, p in inspect.signature(run).parameters.items()}


# ---------------------------------------------------------------- help
def test_the_group_help_lists_every_subcommand():
    for flag in ("--help", "-h"):
        result = invoke(flag)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("Usage: simplecqrs [OPTIONS] COMMAND [ARGS]...")
        listed = re.findall(r"^  (\S+)  ", result.output.split("Commands:")[1], re.MULTILINE)
        assert sorted(listed) == sorted([*SUBCOMMANDS, "bench"]), result.output


def test_no_subcommand_shows_the_help_and_exits_2():
    result = invoke()
    assert result.exit_code == 2 and "Commands:" in result.output, result.output


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_each_subcommand_answers_help(subcommand):
    result = invoke(subcommand, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: simplecqrs {subcommand} [OPTIONS]"), result.output


def test_help_names_every_option_of_the_former_entry_points():
    """The options of the argparse parsers this command line replaced, each still there."""
    former = {
        "relay": ["--reset-position"],
        "consume": ["--migrate"],
        "operator": ["-n, --namespace", "--lease", "--lease-namespace", "--standalone", "--liveness", "-v, --verbose"],
        "audit": ["--json", "--show"],
        "rebuild-read-model": ["--source [auto|topic|mysql]", "--keep-old"],
        "seed": ["--count", "--url", "--host-header", "--concurrency", "--seed"],
    }
    for subcommand, options in former.items():
        out = invoke(subcommand, "--help").output
        for option in options:
            assert f"  {option}" in out, (subcommand, option, out)


# ---------------------------------------------------------------- usage errors: exit 2, the option named
@pytest.mark.parametrize(("args", "message"), [
    (["nosuch"], "No such command 'nosuch'"),
    (["relay", "--nope"], "No such option '--nope'"),
    (["consume", "extra"], "unexpected extra argument (extra)"),
    (["api", "--workers", "4"], "No such option '--workers'"),
    (["operator", "--namespace"], "Option '--namespace' requires an argument"),
    (["audit", "--show", "many"], "Invalid value for '--show'"),
    (["audit", "--show", "-1"], "Invalid value for '--show'"),
    (["rebuild-read-model", "--source", "kafka"], "Invalid value for '--source': 'kafka' is not one of"),
    (["seed", "--count", "ten"], "Invalid value for '--count'"),
    (["seed", "--concurrency", "0"], "Invalid value for '--concurrency'"),
    (["seed", "--seed", "x"], "Invalid value for '--seed'"),
])
def test_a_bad_command_line_exits_2_and_says_what_is_wrong(recorded, args, message):
    rec = recorded(args[0]) if args[0] in MODULES else None
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert rec is None or not rec.calls, "nothing runs after a usage error"


# ---------------------------------------------------------------- options reach the function
@pytest.mark.parametrize("subcommand", MODULES)
def test_without_options_each_function_gets_its_own_defaults(clean_env, recorded, subcommand):
    """The command line's defaults are the function's: one documented default for each setting."""
    defaults = signature_defaults(subcommand)
    rec = recorded(subcommand)
    result = invoke(subcommand)
    assert result.exit_code == 0, result.output
    assert rec.calls == [defaults]


@pytest.mark.parametrize(("args", "expected"), [
    (["relay", "--reset-position"], {"reset_position": True}),
    (["consume", "--migrate"], {"migrate": True}),
    (["operator", "-n", "shop", "--lease", "l1", "--lease-namespace", "ops", "--standalone", "--liveness", "",
      "-v"], {"namespace": "shop", "lease": "l1", "lease_namespace": "ops", "standalone": True, "liveness": "",
              "verbose": True}),
    (["operator", "--namespace=shop", "--verbose"], {"namespace": "shop", "verbose": True}),
    (["audit", "--json", "--show", "3"], {"as_json": True, "show": 3}),
    (["rebuild-read-model", "--source", "mysql", "--keep-old"], {"source": "mysql", "keep_old": True}),
    (["rebuild-read-model", "--source=topic"], {"source": "topic"}),
    (["seed", "--count", "25", "--url", "http://127.0.0.1:9/", "--host-header", "shop.local", "--concurrency", "8",
      "--seed", "7"], {"count": 25, "url": "http://127.0.0.1:9/", "host_header": "shop.local", "concurrency": 8,
                       "seed": 7}),
])
def test_options_reach_the_function(clean_env, recorded, args, expected):
    defaults = signature_defaults(args[0])
    rec = recorded(args[0])
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert rec.calls == [{**defaults, **expected}]


@pytest.mark.parametrize(("env", "expected"), [
    ({"WATCH_NAMESPACE": "shop"}, {"namespace": "shop"}),
    ({"WATCH_NAMESPACE": ""}, {"namespace": None}),                    # empty: the whole cluster
    ({"SIMPLECQRS_OPERATOR_LEASE": "l2", "SIMPLECQRS_OPERATOR_LEASE_NAMESPACE": "ops"},
     {"lease": "l2", "lease_namespace": "ops"}),
    ({"SIMPLECQRS_OPERATOR_STANDALONE": "1"}, {"standalone": True}),
    ({"SIMPLECQRS_OPERATOR_STANDALONE": "true"}, {"standalone": True}),
    ({"SIMPLECQRS_OPERATOR_STANDALONE": "yes"}, {"standalone": False}),   # only 1 or true, as before
    ({"SIMPLECQRS_OPERATOR_LIVENESS": "http://127.0.0.1:9/healthz"}, {"liveness": "http://127.0.0.1:9/healthz"}),
    ({"SIMPLECQRS_OPERATOR_LIVENESS": ""}, {"liveness": ""}),            # '' disables it
])
def test_the_operator_reads_its_environment_as_defaults(clean_env, recorded, env, expected):
    defaults = signature_defaults("operator")
    rec = recorded("operator")
    assert invoke("operator", env=env).exit_code == 0
    assert rec.calls == [{**defaults, **expected}]


def test_an_option_beats_the_environment(clean_env, recorded):
    rec = recorded("operator")
    assert invoke("operator", "--namespace", "mine", env={"WATCH_NAMESPACE": "theirs"}).exit_code == 0
    assert rec.calls[0]["namespace"] == "mine"


def test_seed_reads_the_api_address_from_the_environment(clean_env, recorded):
    """scripts/host.py sets API_URL and API_HOST_HEADER to the instance's API (through the stack's Traefik)."""
    rec = recorded("seed")
    env = {"API_URL": "http://127.0.0.1", "API_HOST_HEADER": "shop.local"}
    assert invoke("seed", env=env).exit_code == 0
    assert rec.calls[0]["url"] == "http://127.0.0.1" and rec.calls[0]["host_header"] == "shop.local"


# ---------------------------------------------------------------- exit codes
@pytest.mark.parametrize("subcommand", MODULES)
@pytest.mark.parametrize("code", [0, 1, 2])
def test_the_function_s_return_value_is_the_exit_code(recorded, subcommand, code):
    """audit: 1 when the models differ; seed: 1 when an order failed; operator: 2 without a Lease namespace."""
    recorded(subcommand, code)
    assert invoke(subcommand).exit_code == code
    assert cli.main([subcommand]) == code


def test_main_returns_2_on_a_usage_error_with_the_message_on_stderr(capsys):
    assert cli.main(["relay", "--nope"]) == 2
    err = capsys.readouterr().err
    assert "Usage: simplecqrs relay [OPTIONS]" in err and "No such option '--nope'" in err
    assert cli.main(["--help"]) == 0
    assert "Commands:" in capsys.readouterr().out


def test_main_returns_130_when_interrupted(monkeypatch, capsys):
    def interrupted(**_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("app.audit"), "run", interrupted)
    assert cli.main(["audit"]) == 130
    assert "Aborted!" in capsys.readouterr().err


def test_main_lets_other_errors_through(recorded, monkeypatch):
    """A store that does not answer is a traceback, as from the former entry points (scripts/host.py turns it
    into one line for the host tools)."""
    def failing(**_kwargs):
        raise ConnectionRefusedError("MySQL at 127.0.0.1:1")

    monkeypatch.setattr(importlib.import_module("app.audit"), "run", failing)
    with pytest.raises(ConnectionRefusedError):
        cli.main(["audit"])


def test_api_execs_gunicorn_with_the_app_s_config(monkeypatch):
    execs = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: execs.append((path, argv)))
    assert invoke("api").exit_code == 0
    assert execs == [(sys.executable,
                      [sys.executable, "-m", "gunicorn", "-c", "python:app.gunicorn_conf", "app.wsgi:app"])]


# ---------------------------------------------------------------- each subcommand imports only its own module
ELSEWHERE = {   # what a subcommand must not load: the other processes (and, for --help, any of them)
    "relay": ("consumer", "simplecqrs_operator", "kopf", "app.api", "flask"),
    "consume": ("app.relay", "simplecqrs_operator", "kopf", "app.api", "app.writemodel", "flask"),
    "operator": ("app.relay", "consumer", "app.api", "flask"),
    "audit": ("app.relay", "consumer", "simplecqrs_operator", "kopf", "app.api"),
    "rebuild-read-model": ("app.relay", "consumer", "simplecqrs_operator", "kopf", "app.api"),
    "seed": ("app.relay", "consumer", "simplecqrs_operator", "kopf", "app.api", "cassandra", "kafka", "pymysql"),
}
PROBE = """
import importlib, json, sys
subcommand, module = sys.argv[1], sys.argv[2]
from app import cli
assert cli.main(["--help"]) == 0 and cli.main([subcommand, "--help"]) == 0
after_help = sorted(sys.modules)
if module:
    importlib.import_module(module).run = lambda **kwargs: 0    # what the subcommand imports, not run
    assert cli.main([subcommand]) == 0
print(json.dumps({"help": after_help, "run": sorted(sys.modules)}))
"""


def loaded(subcommand: str, module: str) -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-c", PROBE, subcommand, module], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def among(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize("subcommand", MODULES)
def test_a_subcommand_imports_its_own_module_only(subcommand):
    mods = loaded(subcommand, MODULES[subcommand])
    assert not among(mods["help"], (*MODULES.values(), "consumer", "simplecqrs_operator", "app.relay", "kopf",
                                    "kafka", "cassandra", "pymysql", "flask", "gunicorn")), "--help loads nothing"
    assert MODULES[subcommand] in mods["run"]
    assert not among(mods["run"], ELSEWHERE[subcommand]), among(mods["run"], ELSEWHERE[subcommand])


# ---------------------------------------------------------------- who runs these commands
def test_pyproject_has_one_command_and_pins_click_as_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"simplecqrs": "app.cli:main"}
    assert f"click=={importlib.metadata.version('click')}" in project["dependencies"]


def test_the_image_the_operator_and_its_manifests_run_simplecqrs_subcommands():
    """The Dockerfile's labels and CMD, the pods the operator makes, the operator's Deployment (chart and
    plain manifest): each a subcommand of `simplecqrs`."""
    from simplecqrs_operator import children

    dockerfile = (ROOT / "Dockerfile").read_text()
    labels = dict(re.findall(r'io\.simplecqrs\.entrypoint\.(\w+)="([^"]+)"', dockerfile))
    assert labels == {"api": "simplecqrs api", "relay": "simplecqrs relay", "consumer": "simplecqrs consume",
                      "operator": "simplecqrs operator"}
    (cmd,) = re.findall(r"^CMD (.+)$", dockerfile, re.MULTILINE)
    assert json.loads(cmd) == labels["api"].split()
    assert children.API_COMMAND == labels["api"].split()
    assert children.RELAY_COMMAND == labels["relay"].split()
    assert children.CONSUMER_COMMAND == labels["consumer"].split()
    chart = (ROOT / "charts" / "simplecqrs-operator" / "templates" / "deployment.yaml").read_text()
    assert re.findall(r"command: (\[.*\])", chart) == [json.dumps(labels["operator"].split())]
    manifest = [d for d in yaml.safe_load_all((ROOT / "k8s" / "operator" / "deployment.yaml").read_text())
                if d and d["kind"] == "Deployment"]
    assert manifest[0]["spec"]["template"]["spec"]["containers"][0]["command"] == labels["operator"].split()
    for argv in labels.values():
        assert invoke(argv.split()[1], "--help").exit_code == 0, argv


def test_the_host_tools_run_the_product_commands(monkeypatch, capsys):
    """scripts/audit, seed and rebuild-read-model: `simplecqrs <tool>` in-process (scripts/host.py), --help
    without an instance; a bad option is the command's usage error."""
    from scripts import host

    monkeypatch.setenv("MYSQL_USER", "nobody")          # the shell's own settings: no instance is read
    for tool in ("audit", "seed", "rebuild-read-model"):
        assert host.main([tool, "--help"]) == 0
        assert f"Usage: simplecqrs {tool} [OPTIONS]" in capsys.readouterr().out
    assert host.main(["seed", "--count", "ten"]) == 2
    assert "Invalid value for '--count'" in capsys.readouterr().err
    monkeypatch.delenv("MYSQL_USER")
    assert host.main(["audit", "-h"]) == 0, "the help needs no instance"


def test_bench_runs_the_checkouts_scripts_bench():
    """`simplecqrs bench ARGS` hands ARGS to scripts/bench (its own --help, its own usage errors)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "app.cli", "bench", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("Usage: scripts/bench [OPTIONS]"), run.stdout + run.stderr
    assert "--infra-only" in run.stdout and "--instance" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "app.cli", "bench", "--relays", "nope"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "Invalid value for '--relays'" in bad.stderr, bad.stdout + bad.stderr

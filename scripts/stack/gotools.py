"""Build the Go tools of the local Kubernetes control plane from the Go module proxy.

etcd, kube-apiserver and kube-controller-manager are built from the wrapper
modules in scripts/gotools/{etcd,k8s} (their go.mod/go.sum pin every version);
helm needs no wrapper (`go install helm.sh/helm/v3/cmd/helm@version`).

Binaries land in CACHE/bin/<name>-<version> and are linked into .local/bin/<name>.
Go's own caches (GOMODCACHE, GOCACHE) make rebuilds after a version bump cheap.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import commands, errors, paths

# Keep these in step with scripts/gotools/*/go.mod (build() checks the wrapper's go.mod).
# Kubernetes: kubectl on the machine is v1.32.4; client/server skew is +-1 minor.
K8S_VERSION = "v1.32.13"
K8S_BUILD_DATE = "2026-02-27T00:14:55Z"   # time of the v1.32.13 tag on the module proxy
# etcd: the version kubeadm pins for Kubernetes 1.32.13 (cmd/kubeadm/app/constants).
ETCD_VERSION = "v3.5.24"
ETCD_GIT_SHA = "e72f3c2"                  # server/v3.5.24 tag (the proxy's .info Origin.Hash)
# helm: v3.20.x officially supports Kubernetes 1.35-1.32; v3.21+ (client-go 0.36+) drops 1.32.
HELM_VERSION = "v3.20.2"
HELM_K8S_MINOR = "35"                     # minor of k8s.io/client-go (v0.35.1) in helm's go.mod
# skaffold: newest release; its schema skaffold/v4beta14 is ../shared/ref/skaffold-schema-v4beta14.json.
SKAFFOLD_VERSION = "v2.24.0"
SKAFFOLD_GIT_COMMIT = "b0d643a5b5944a7d3f82bd5c00d5eaa0902226bd"  # the proxy's .info Origin.Hash
SKAFFOLD_BUILD_DATE = "2026-07-23T19:48:45Z"                       # the proxy's .info Time
# Traefik (the ingress controller, scripts/stack/ingress.py): the only Traefik on the proxy that builds
# (v3.7.x needs module versions the proxy refuses).  Not in TOOLS/build_all(): see build_traefik().
TRAEFIK_VERSION = "v3.6.12"
TRAEFIK_CODENAME = "ramequin"             # .github/workflows/release.yaml of v3.6.12
TRAEFIK_BUILD_DATE = "2026-03-26T09:54:04Z"  # the proxy's .info Time

CRICTL_VERSION = "v1.34.0"
COREDNS_VERSION = "v1.11.3"
METRICS_SERVER_VERSION = "v0.8.0"
# The default StorageClass of kind (and k3s): the only version the proxy lists.
LOCAL_PATH_VERSION = "v0.0.30"
# kube-router: only its NetworkPolicy firewall runs (scripts/stack/netpol.py says why this version and
# what its security advisories concern); the only version the proxy serves.
KUBE_ROUTER_VERSION = "v2.1.0"
KUBE_ROUTER_BUILD_DATE = "2024-03-03T05:25:26Z"   # the proxy's .info Time
# The Gateway API's CRDs (standard channel), which Traefik's Gateway provider serves (ingress.py).
GATEWAY_API_VERSION = "v1.6.3"

GOTOOLS = paths.ROOT / "scripts" / "gotools"
CACHE_BIN = paths.CACHE / "bin"


@dataclass(frozen=True)
class GoTool:
    name: str
    version: str
    package: str            # package path, or package@version for `go install`
    module_dir: Path | None  # wrapper module to build in; None = `go install pkg@version`
    ldflags: str
    tags: str = ""
    for_up: bool = True      # False: only the tests (and `make dev`) use it; built when first needed

    @property
    def path(self) -> Path:
        return CACHE_BIN / f"{self.name}-{self.version}"


def _k8s_ldflags() -> str:
    # As hack/lib/version.sh: both version packages, else /version says v0.0.0-master.
    minor = K8S_VERSION.split(".")[1]
    values = {"gitVersion": K8S_VERSION, "gitMajor": "1", "gitMinor": minor,
              "gitTreeState": "clean", "buildDate": K8S_BUILD_DATE}
    return " ".join(f"-X k8s.io/{pkg}.{k}={v}" for pkg in ("client-go/pkg/version", "component-base/version")
                    for k, v in values.items())


TOOLS = [
    GoTool("etcd", ETCD_VERSION, "go.etcd.io/etcd/server/v3", GOTOOLS / "etcd",
           f"-X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_GIT_SHA}"),
    # k8s builds its static binaries with CGO_ENABLED=0 and tags selinux,notest (hack/lib/golang.sh).
    GoTool("kube-apiserver", K8S_VERSION, "k8s.io/kubernetes/cmd/kube-apiserver", GOTOOLS / "k8s",
           _k8s_ldflags(), tags="selinux,notest"),
    GoTool("kube-controller-manager", K8S_VERSION, "k8s.io/kubernetes/cmd/kube-controller-manager",
           GOTOOLS / "k8s", _k8s_ldflags(), tags="selinux,notest"),
    # The node (node.py): same wrapper module, same flags.
    *[GoTool(name, K8S_VERSION, f"k8s.io/kubernetes/cmd/{name}", GOTOOLS / "k8s", _k8s_ldflags(),
             tags="selinux,notest") for name in ("kube-scheduler", "kubelet", "kube-proxy")],
    # crictl: the CRI client (cri-tools is not packaged in bookworm; v1.32.0 is not on the proxy).
    GoTool("crictl", CRICTL_VERSION, f"sigs.k8s.io/cri-tools/cmd/crictl@{CRICTL_VERSION}", None,
           f"-X sigs.k8s.io/cri-tools/pkg/version.Version={CRICTL_VERSION}"),
    # CoreDNS: the version kubeadm deploys with Kubernetes 1.32 (cmd/kubeadm/app/constants).
    GoTool("coredns", COREDNS_VERSION, f"github.com/coredns/coredns@{COREDNS_VERSION}", None, ""),
    GoTool("metrics-server", METRICS_SERVER_VERSION,
           f"sigs.k8s.io/metrics-server/cmd/metrics-server@{METRICS_SERVER_VERSION}", None,
           f"-X sigs.k8s.io/metrics-server/pkg/version.gitVersion={METRICS_SERVER_VERSION}"),
    GoTool("local-path-provisioner", LOCAL_PATH_VERSION,
           f"github.com/rancher/local-path-provisioner@{LOCAL_PATH_VERSION}", None,
           f"-X main.VERSION={LOCAL_PATH_VERSION}"),
    # The NetworkPolicy enforcer (netpol.py); version variables as its Makefile sets them.
    GoTool("kube-router", KUBE_ROUTER_VERSION,
           f"github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@{KUBE_ROUTER_VERSION}", None,
           " ".join(f"-X github.com/cloudnativelabs/kube-router/v2/pkg/version.{k}={v}"
                    for k, v in (("Version", KUBE_ROUTER_VERSION), ("BuildDate", KUBE_ROUTER_BUILD_DATE)))),
    # As helm's Makefile; without these `helm version` says "v3.20" and offline
    # template/lint assume Kubernetes v1.20.
    GoTool("helm", HELM_VERSION, f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}", None,
           f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"
           " -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
           f" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={HELM_K8S_MINOR}"
           f" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={HELM_K8S_MINOR}"),
    # skaffold's go.mod has replace directives, so `go install ...@version` refuses it:
    # the wrapper module scripts/gotools/skaffold repeats them.  Tags/ldflags as its Makefile.
    GoTool("skaffold", SKAFFOLD_VERSION, "github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold",
           GOTOOLS / "skaffold",
           " ".join(f"-X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.{k}={v}"
                    for k, v in (("version", SKAFFOLD_VERSION), ("gitCommit", SKAFFOLD_GIT_COMMIT),
                                 ("buildDate", SKAFFOLD_BUILD_DATE))),
           tags="timetzdata,osusergo,netgo,release", for_up=False),
]


def _go_env() -> dict:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",        # static binaries, no C toolchain needed
        GOTOOLCHAIN="local",    # never try to download another Go
        GOWORK="off",
        GOFLAGS="-buildvcs=false -mod=readonly",
    )
    return env


TIMINGS = CACHE_BIN / "build-seconds.json"


def _timings(name: str | None = None, seconds: float | None = None) -> dict[str, float]:
    """How long each tool's last build took (per user, beside the binaries): progress lines show it."""
    try:
        data = json.loads(TIMINGS.read_text())
    except (OSError, ValueError):
        data = {}
    if name is not None:
        data[name] = round(seconds or 0)
        TIMINGS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


# Cold build times measured on this project's machine (2 cores, empty Go caches), shown beside the
# elapsed time on a user's first build; later builds show that user's own last time.
FIRST_BUILD_SECONDS = {"etcd": 33, "kube-apiserver": 184, "kube-controller-manager": 60, "kube-scheduler": 40,
                       "kubelet": 60, "kube-proxy": 30, "crictl": 106, "coredns": 120, "metrics-server": 450,
                       "helm": 91, "skaffold": 240, "traefik": 900, "kube-router": 190}


def expected_seconds(name: str) -> float | None:
    return _timings().get(name) or FIRST_BUILD_SECONDS.get(name)


def build(tool: GoTool) -> Path:
    """Build one tool into the cache unless already there; returns the binary path."""
    if tool.path.exists():
        return tool.path
    go = paths.which("go")
    if go is None:
        raise errors.StackError(tool.name, "the `go` command is not installed (Go >= 1.24 needed)")
    if tool.module_dir is not None and f" {tool.version}" not in (tool.module_dir / "go.mod").read_text():
        raise errors.StackError(tool.name, f"{tool.module_dir}/go.mod does not pin {tool.version}")
    CACHE_BIN.mkdir(parents=True, exist_ok=True)
    flags = ["-trimpath", "-ldflags", f"-s -w {tool.ldflags}"]
    if tool.tags:
        flags += ["-tags", tool.tags]
    # Build into a temporary name/dir and rename at the end: an interrupted build
    # never leaves a half-written binary that a later run would take as done.
    with tempfile.TemporaryDirectory(dir=CACHE_BIN, prefix=f".{tool.name}-") as tmp:
        if tool.module_dir is not None:
            cmd = [go, "build", *flags, "-o", f"{tmp}/{tool.name}", tool.package]
            cwd, env = tool.module_dir, _go_env()
        else:
            cmd = [go, "install", *flags, tool.package]
            cwd, env = Path(tmp), dict(_go_env(), GOBIN=tmp)
        took = commands.run(cmd, f"building {tool.name} {tool.version}", cwd=cwd, env=env,
                            log=paths.LOGS / f"install-{tool.name}.log", expected=expected_seconds(tool.name))
        _timings(tool.name, took)
        os.replace(Path(tmp) / tool.name, tool.path)
    return tool.path


def build_all() -> dict[str, Path]:
    """Idempotent: build what `make up` needs and is missing, link each into .local/bin/<name>.
    (skaffold, ~4 minutes cold, is built by ensure() when a test or `make dev` first needs it.)"""
    paths.ensure_dirs()
    return {tool.name: ensure(tool.name) for tool in TOOLS if tool.for_up}


def ensure(name: str) -> Path:
    """One tool, built if missing and linked into .local/bin/<name>."""
    tool = next(t for t in TOOLS if t.name == name)
    path = build(tool)
    paths.link_tool(path, tool.name)
    return path



def module_dir(module: str, component: str) -> Path:
    """The read-only directory of `module` (path@version) in the Go module cache, downloaded from the
    module proxy unless there (per user: a fresh clone finds it)."""
    go = paths.which("go")
    if go is None:
        raise errors.StackError(component, "the `go` command is not installed (Go >= 1.25 needed)")
    with tempfile.TemporaryDirectory(prefix=".gomod-") as tmp:   # outside any module: no go.mod consulted
        out = subprocess.run([go, "mod", "download", "-json", module], cwd=tmp, env=_go_env(),
                             capture_output=True, text=True)
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Dir" not in info:
        raise errors.StackError(component, f"go mod download {module}: "
                                           f"{(info.get('Error') or out.stderr).strip()[-300:]}")
    return Path(info["Dir"])


def build_traefik() -> Path:
    """Build Traefik into CACHE/bin/traefik-<version> unless there; link it as .local/bin/traefik.

    Its go.mod has `replace` lines, so `go install ...@version` refuses it: build inside the module
    directory `go mod download -json` gives (read-only, hence -mod=mod: go.sum is not rewritten).
    """
    path = CACHE_BIN / f"traefik-{TRAEFIK_VERSION}"
    if not path.exists():
        go = paths.which("go")
        if go is None:
            raise errors.StackError("traefik", "the `go` command is not installed (Go >= 1.25 needed)")
        CACHE_BIN.mkdir(parents=True, exist_ok=True)
        env = dict(_go_env(), GOFLAGS="-buildvcs=false -mod=mod")
        source = module_dir(f"github.com/traefik/traefik/v3@{TRAEFIK_VERSION}", "traefik")
        with tempfile.TemporaryDirectory(dir=CACHE_BIN, prefix=".traefik-") as tmp:
            pkg = "github.com/traefik/traefik/v3/pkg/version"
            ldflags = (f"-s -w -X {pkg}.Version={TRAEFIK_VERSION} -X {pkg}.Codename={TRAEFIK_CODENAME}"
                       f" -X {pkg}.BuildDate={TRAEFIK_BUILD_DATE}")
            took = commands.run([go, "build", "-trimpath", "-ldflags", ldflags, "-o", f"{tmp}/traefik", "./cmd/traefik"],
                                f"building traefik {TRAEFIK_VERSION}", cwd=source, env=env,
                                log=paths.LOGS / "install-traefik.log", expected=expected_seconds("traefik"))
            _timings("traefik", took)
            os.replace(Path(tmp) / "traefik", path)
    paths.link_tool(path, "traefik")
    return path

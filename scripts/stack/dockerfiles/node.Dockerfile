# The local node's own images: one stage per program, each its static binary alone, the way
# upstream ships them (distroless / FROM scratch).  No registry is reachable, so the binaries
# are built here from the Go module proxy (scripts/stack/gotools.py; pause with gcc -static)
# and scripts/stack/addons.py builds one stage with `docker build --target <name>`, the build
# context holding just that binary, then hands the image to the node's containerd.
# The tags are the names the upstream manifests use (the kubelet never pulls: IfNotPresent /
# Never, and containerd's sandbox_image for pause).

# The one stage that needs a shell: the Debian root made here (images.py), or any Debian.
ARG BASE_IMAGE=debian:bookworm-slim

# registry.k8s.io/pause: the sandbox every pod's containers join (build/pause/linux/pause.c).
FROM scratch AS pause
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]

# registry.k8s.io/coredns/coredns: cluster DNS (scripts/stack/addons/coredns.yaml).
FROM scratch AS coredns
COPY coredns /coredns
USER 65532:65532
EXPOSE 1053/tcp 1053/udp
ENTRYPOINT ["/coredns"]

# registry.k8s.io/metrics-server/metrics-server: metrics.k8s.io for the HPA.
FROM scratch AS metrics-server
COPY metrics-server /metrics-server
USER 65532:65532
ENTRYPOINT ["/metrics-server"]

# rancher/local-path-provisioner: the default StorageClass, as kind ships it; its helper pods
# (mkdir/rm of volume directories) run the Debian base image, which has a shell.
FROM scratch AS local-path-provisioner
COPY local-path-provisioner /usr/bin/local-path-provisioner
USER 65532:65532
ENTRYPOINT ["/usr/bin/local-path-provisioner"]

# Its helper pods create and remove the volume directories (sh, mkdir, rm); kind's
# kindest/local-path-helper is the same idea.
FROM ${BASE_IMAGE} AS local-path-helper

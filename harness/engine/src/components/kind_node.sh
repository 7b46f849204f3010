#!/usr/bin/env bash
# Builds a kind node image without any container registry. Run by
# `preflight components kind-image` (components/kind_image.rs), which builds every
# binary from pinned Go modules first and passes their paths in the environment:
#
#   WORK          a directory for root file systems and build contexts (kept between runs)
#   KIND_SRC      the sigs.k8s.io/kind module directory (images/base/files: kind's own
#                 entrypoint, systemd units and containerd configuration)
#   MIRROR        the Debian mirror for debootstrap
#   BASE_IMAGE    tag of the version-independent node base (built once per machine)
#   PROXY_BASE    tag of the version-independent kube-proxy base
#   NODE_IMAGE    the image to produce, e.g. preflight/node:v1.30.14
#   K8S           the Kubernetes version
#   BIN           a directory with kube-apiserver kube-controller-manager kube-scheduler
#                 kube-proxy kubelet kubeadm kubectl etcd coredns crictl
#   PAUSE_SRC     kubernetes' build/pause/linux/pause.c
#   ETCD_TAG COREDNS_TAG PAUSE_TAG   the image tags this release's kubeadm asks for
#   CNI_IMAGE WORKLOAD_IMAGE         preflight's CNI daemon and workload images
#
# Every step prints a `step: ...` line so the caller can show progress.
set -euo pipefail
export DOCKER_BUILDKIT=0
: "${WORK:?}"
step() { echo "step: $*"; }
# `docker build` quietly: its output (the legacy builder's deprecation notice included)
# only when it fails.
dbuild() {
  local out
  out=$(docker build -q "$@" 2>&1) || { echo "$out" >&2; return 1; }
}
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
mkdir -p "$WORK"

# What kind's images/base/Dockerfile installs, from Debian's packages (containerd, runc
# and the CNI plugins included, instead of kind's own builds of them).
NODE_PACKAGES=systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,e2fsprogs,containerd,runc,containernetworking-plugins,socat,ebtables

node_base() {
  have_image "$BASE_IMAGE" && return 0
  step "debootstrap of the node's root file system (once per machine)"
  local r="$WORK/node-rootfs" f="$KIND_SRC/images/base/files"
  rm -rf "$r"
  debootstrap --variant=minbase --include="$NODE_PACKAGES" bookworm "$r" "$MIRROR" >"$WORK/debootstrap-node.log" 2>&1 ||
    { tail -n 20 "$WORK/debootstrap-node.log" >&2; exit 1; }
  step "configuring the node like kind's base image"
  install -m 0755 "$f"/usr/local/bin/* "$r/usr/local/bin/"
  mkdir -p "$r/kind/bin" "$r/etc/containerd" "$r/etc/default" "$r/etc/sysctl.d" "$r/etc/systemd/system/kubelet.service.d" "$r/opt/cni/bin"
  cp -r "$f/kind/." "$r/kind/" && chmod 0755 "$r/kind" "$r/kind/bin" "$r"/kind/bin/*
  install -m 0644 "$f/etc/crictl.yaml" "$r/etc/"
  install -m 0644 "$f/etc/containerd/config.toml" "$r/etc/containerd/"
  install -m 0644 "$f/etc/default/kubelet" "$r/etc/default/"
  install -m 0644 "$f"/etc/sysctl.d/* "$r/etc/sysctl.d/"
  install -m 0644 "$f"/etc/systemd/system/*.service "$f"/etc/systemd/system/*.slice "$r/etc/systemd/system/"
  install -m 0644 "$f"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
  rm -f "$r/etc/systemd/system/containerd-fuse-overlayfs.service"
  # Debian's paths where kind expects its own builds.
  ln -sf /usr/bin/containerd "$r/usr/local/bin/containerd"
  cp -a "$r/usr/lib/cni/." "$r/opt/cni/bin/"
  # No fuse-overlayfs snapshotter (rootless only).
  sed -i '/^\[proxy_plugins/,/address = /d' "$r/etc/containerd/config.toml"
  # Where the host withholds CAP_SYS_RESOURCE, runc cannot lower a sandbox's OOM score
  # ("can't get final child's PID from pipe"); clamping is harmless everywhere else.
  sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' "$r/etc/containerd/config.toml"
  chroot "$r" /bin/bash -ec '
    find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
    echo ReadKMsg=no >> /etc/systemd/journald.conf
    ln -sf /usr/lib/systemd/systemd /sbin/init
    systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
    systemctl mask systemd-binfmt.service >/dev/null 2>&1
    mkdir -p /etc/kubernetes/manifests /kind/manifests
    ctr oci spec | jq ".hooks.createContainer[.hooks.createContainer | length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" \
      | jq "del(.process.rlimits)" > /etc/containerd/cri-base.json
    rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /usr/share/doc /usr/share/man /usr/share/locale
    rm -f /etc/hostname /etc/machine-id /var/lib/dbus/machine-id; touch /etc/machine-id
  '
  step "importing the node base image $BASE_IMAGE"
  tar --numeric-owner -C "$r" -c . | docker import --change 'ENV container=docker' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$BASE_IMAGE-unsigned" >/dev/null
  # docker import cannot set STOPSIGNAL: one metadata-only build step (systemd stops on SIGRTMIN+3).
  printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$BASE_IMAGE-unsigned" | dbuild -t "$BASE_IMAGE" -
  docker rmi "$BASE_IMAGE-unsigned" >/dev/null
  rm -rf "$r"
}

proxy_base() {
  have_image "$PROXY_BASE" && return 0
  step "debootstrap of kube-proxy's root file system (once per machine)"
  local r="$WORK/proxy-rootfs"
  rm -rf "$r"
  debootstrap --variant=minbase --include=iptables,conntrack,kmod,ebtables,ipset bookworm "$r" "$MIRROR" >"$WORK/debootstrap-proxy.log" 2>&1 ||
    { tail -n 20 "$WORK/debootstrap-proxy.log" >&2; exit 1; }
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/usr/share/doc "$r"/usr/share/man "$r"/usr/share/locale
  tar --numeric-owner -C "$r" -c . | docker import - "$PROXY_BASE" >/dev/null
  rm -rf "$r"
}

# A FROM-scratch image with one static binary as its entrypoint.
scratch_image() { # tag binary path-in-image [extra Dockerfile lines]
  local ctx
  ctx=$(mktemp -d "$WORK/ctx.XXXXXX")
  cp "$2" "$ctx/bin"
  printf 'FROM scratch\nCOPY bin %s\nENV PATH=/usr/local/bin:/usr/bin:/bin\nENTRYPOINT ["%s"]\n%s\n' "$3" "$3" "${4:-}" >"$ctx/Dockerfile"
  dbuild -t "$1" "$ctx"
  rm -rf "$ctx"
}

busybox_rootfs() { # dir: static busybox with its applets as links
  mkdir -p "$1/bin" "$1/tmp" "$1/etc"
  cp "$(command -v busybox)" "$1/bin/busybox"
  local a
  for a in $("$1/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"; done
  echo 'root:x:0:0:root:/:/bin/sh' >"$1/etc/passwd"
}

# The workload image the test chart's Pods and hook Jobs run: Debian's static busybox.
workload_image() {
  have_image "$WORKLOAD_IMAGE" && return 0
  step "building the workload image $WORKLOAD_IMAGE (static busybox)"
  local ctx
  ctx=$(mktemp -d "$WORK/ctx.XXXXXX")
  busybox_rootfs "$ctx/rootfs"
  printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD ["sh"]\n' >"$ctx/Dockerfile"
  dbuild -t "$WORKLOAD_IMAGE" "$ctx"
  rm -rf "$ctx"
}

# preflight's CNI daemon: no registry image (kindnetd) is reachable, so a few lines of
# shell write a bridge + host-local configuration for the node's podCIDR and route the
# other nodes' podCIDRs through their addresses.
cni_image() {
  have_image "$CNI_IMAGE" && return 0
  step "building the CNI image $CNI_IMAGE"
  local ctx
  ctx=$(mktemp -d "$WORK/ctx.XXXXXX")
  busybox_rootfs "$ctx/rootfs"
  cp "$BIN/kubectl" "$ctx/rootfs/bin/kubectl"
  cat >"$ctx/rootfs/bin/preflight-cni" <<'CNI'
#!/bin/sh
# Keeps /etc/cni/net.d/10-preflight.conflist in step with this node's podCIDR and
# routes every other node's podCIDR through that node's InternalIP.
: "${NODE_NAME:?}"
sa=/var/run/secrets/kubernetes.io/serviceaccount
conf=/etc/cni/net.d/10-preflight.conflist
while true; do
  server="https://${CONTROL_PLANE_ENDPOINT:-$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT}"
  kubectl --server="$server" --certificate-authority=$sa/ca.crt --token="$(cat $sa/token)" get nodes \
    -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}' |
  while read -r name cidr addresses; do
    [ -n "$name" ] && [ -n "$cidr" ] || continue
    if [ "$name" = "$NODE_NAME" ]; then
      want=$(printf '{"cniVersion":"0.4.0","name":"preflight","plugins":[{"type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":true,"hairpinMode":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"%s"}]],"routes":[{"dst":"0.0.0.0/0"}]}},{"type":"portmap","capabilities":{"portMappings":true}}]}' "$cidr")
      [ "$(cat $conf 2>/dev/null)" = "$want" ] || { echo "$want" >$conf.tmp && mv $conf.tmp $conf && echo "wrote $conf for $cidr"; }
    else
      for a in $addresses; do case "$a" in *:*) ;; *) ip route replace "$cidr" via "$a" ;; esac; done
    fi
  done
  sleep 5
done
CNI
  chmod 0755 "$ctx/rootfs/bin/preflight-cni"
  printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nENTRYPOINT ["/bin/preflight-cni"]\n' >"$ctx/Dockerfile"
  dbuild -t "$CNI_IMAGE" "$ctx"
  rm -rf "$ctx"
}

cni_manifest() {
  cat <<YAML
# preflight's CNI (kind applies /kind/manifests/default-cni.yaml).
# would you kindly patch this file
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: preflight-cni}
rules: [{apiGroups: [""], resources: [nodes], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: preflight-cni}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: preflight-cni}
subjects: [{kind: ServiceAccount, name: preflight-cni, namespace: kube-system}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: preflight-cni, namespace: kube-system}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: preflight-cni
  namespace: kube-system
  labels: {app: preflight-cni}
spec:
  selector: {matchLabels: {app: preflight-cni}}
  template:
    metadata: {labels: {app: preflight-cni}}
    spec:
      hostNetwork: true
      tolerations: [{operator: Exists}]
      priorityClassName: system-node-critical
      serviceAccountName: preflight-cni
      containers:
      - name: preflight-cni
        image: $CNI_IMAGE
        imagePullPolicy: Never
        env:
        - name: NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        volumeMounts: [{name: cni-cfg, mountPath: /etc/cni/net.d}]
        securityContext: {capabilities: {add: [NET_RAW, NET_ADMIN]}}
      volumes: [{name: cni-cfg, hostPath: {path: /etc/cni/net.d}}]
YAML
}

control_plane_images() { # -> $WORK/images-$K8S.tar
  step "building the control-plane images of $K8S"
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    scratch_image "registry.k8s.io/$b:$K8S" "$BIN/$b" "/usr/local/bin/$b"
  done
  local ctx
  ctx=$(mktemp -d "$WORK/ctx.XXXXXX")
  cp "$BIN/kube-proxy" "$ctx/kube-proxy"
  printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nENTRYPOINT ["/usr/local/bin/kube-proxy"]\n' "$PROXY_BASE" >"$ctx/Dockerfile"
  dbuild -t "registry.k8s.io/kube-proxy:$K8S" "$ctx"
  rm -rf "$ctx"
  scratch_image "registry.k8s.io/etcd:$ETCD_TAG" "$BIN/etcd" /usr/local/bin/etcd
  scratch_image "registry.k8s.io/coredns/coredns:$COREDNS_TAG" "$BIN/coredns" /coredns 'EXPOSE 53 53/udp'
  gcc -Os -static -o "$WORK/pause" "$PAUSE_SRC" -DVERSION="$PAUSE_TAG" && strip "$WORK/pause"
  scratch_image "registry.k8s.io/pause:$PAUSE_TAG" "$WORK/pause" /pause 'USER 65535:65535'
  # kind's containerd configuration names pause:3.10 as the sandbox image.
  docker tag "registry.k8s.io/pause:$PAUSE_TAG" registry.k8s.io/pause:3.10
  docker save -o "$WORK/images-$K8S.tar" \
    "registry.k8s.io/kube-apiserver:$K8S" "registry.k8s.io/kube-controller-manager:$K8S" \
    "registry.k8s.io/kube-scheduler:$K8S" "registry.k8s.io/kube-proxy:$K8S" \
    "registry.k8s.io/etcd:$ETCD_TAG" "registry.k8s.io/coredns/coredns:$COREDNS_TAG" \
    "registry.k8s.io/pause:$PAUSE_TAG" registry.k8s.io/pause:3.10 "$CNI_IMAGE" "$WORKLOAD_IMAGE"
}

node_image() {
  step "assembling $NODE_IMAGE"
  local b
  id="preflight-node-build-$$"
  docker rm -f "$id" >/dev/null 2>&1 || true
  trap 'docker rm -f "$id" >/dev/null 2>&1 || true' EXIT
  trap 'exit 143' TERM INT
  docker run -d --name "$id" --entrypoint=sleep --security-opt seccomp=unconfined "$BASE_IMAGE" infinity >/dev/null
  for b in kubelet kubeadm kubectl; do docker cp -L "$BIN/$b" "$id:/usr/bin/$b"; done
  docker cp -L "$BIN/crictl" "$id:/usr/local/bin/crictl"
  cni_manifest >"$WORK/default-cni.yaml"
  docker cp "$WORK/default-cni.yaml" "$id:/kind/manifests/default-cni.yaml"
  printf '%s' "$K8S" >"$WORK/version" && docker cp "$WORK/version" "$id:/kind/version"
  step "preloading images into the node's containerd"
  docker exec "$id" bash -c 'nohup containerd >/var/log/containerd-build.log 2>&1 &'
  local i
  for i in $(seq 100); do docker exec "$id" ctr version >/dev/null 2>&1 && break; sleep 0.2; done
  docker exec -i "$id" ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests - <"$WORK/images-$K8S.tar" >/dev/null
  docker exec "$id" bash -c 'kill $(pidof containerd); while pidof containerd >/dev/null; do sleep 0.1; done; rm -f /var/log/containerd-build.log'
  docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' --change 'CMD []' "$id" "$NODE_IMAGE" >/dev/null
  rm -f "$WORK/images-$K8S.tar"
}

case "${1:-all}" in
  workload) : "${WORKLOAD_IMAGE:?}"; workload_image ;;
  all)
    : "${KIND_SRC:?}" "${BASE_IMAGE:?}" "${PROXY_BASE:?}" "${NODE_IMAGE:?}" "${K8S:?}" "${BIN:?}" "${MIRROR:?}"
    : "${PAUSE_SRC:?}" "${ETCD_TAG:?}" "${COREDNS_TAG:?}" "${PAUSE_TAG:?}" "${CNI_IMAGE:?}" "${WORKLOAD_IMAGE:?}"
    node_base; proxy_base; workload_image; cni_image; control_plane_images; node_image ;;
  *) echo "unknown stage $1" >&2; exit 2 ;;
esac
step "done"

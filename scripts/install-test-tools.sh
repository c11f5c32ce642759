#!/usr/bin/env bash
# Installs what the test suite drives for real, when it is absent: Debian's docker-registry,
# skopeo, containerd (ctr), umoci, redis-server, apache2-utils (ab), nginx (blob baseline), chromium (the operator page test),
# docker.io (dockerd 20.10 and the docker CLI; tests start their own daemon), and trixie's
# cosign 2.5 (bookworm has none) and kubectl 1.32 (bookworm's is 1.20, without kustomize v5),
# unpacked into .tools/ without touching apt's own setup.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in docker-registry:docker-registry skopeo:skopeo ctr:containerd umoci:umoci \
            redis-server:redis-server ab:apache2-utils nginx:nginx dockerd:docker.io docker:docker.io openssl:openssl chromium:chromium; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "missing test tools (${need[*]}); run as root to install them" >&2; exit 1; fi
  echo "installing Debian packages: ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  # nginx's package starts a system service on :80; the bench runs its own.
  # docker.io's package starts a system dockerd (and with it a containerd); tests run their own
  # with private sockets and dirs, and a system one would only hold state under /var/lib/docker.
  if command -v systemctl >/dev/null 2>&1; then
    for unit in nginx docker.socket docker; do systemctl disable --now "$unit" >/dev/null 2>&1 || true; done
  fi
  pkill -x nginx 2>/dev/null || true
  # Without systemd the init script may have started it: stop it by its default pidfile only, so
  # a test's private dockerd (its own --pidfile) is left alone. SIGTERM also stops its containerd.
  if [ -s /var/run/docker.pid ]; then
    kill "$(cat /var/run/docker.pid)" 2>/dev/null || true
    for _ in $(seq 50); do [ -e /var/run/docker.pid ] || break; sleep 0.2; done
  fi
fi


# From Debian trixie, with a private apt state so the machine's own sources stay as they are:
# trixie PACKAGE BINARY puts /usr/bin/BINARY of PACKAGE at .tools/bin/BINARY.
work=""
trap 'rm -rf "${work:-}" "${pwork:-}"' EXIT
trixie() {
  if [ -z "$work" ]; then
    work=$(mktemp -d)
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
    echo "deb http://deb.debian.org/debian trixie main" > "$work/sources.list"
    : > "$work/status" # an empty dpkg status: what this machine has installed is not a candidate
    apt_private=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::status="$work/status"
                 -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
    apt-get "${apt_private[@]}" update -q >/dev/null
  fi
  echo "fetching $1 from Debian trixie into .tools/"
  mkdir -p .tools/bin "$work/$1"
  (cd "$work/$1" && apt-get "${apt_private[@]}" download "$1" >/dev/null)
  dpkg-deb -x "$work/$1"/"$1"_*.deb "$work/$1/root"
  install -m 0755 "$work/$1/root/usr/bin/$2" ".tools/bin/$2"
}

cosign=.tools/bin/cosign
[ -x "$cosign" ] || trixie cosign cosign
"$cosign" version 2>/dev/null | grep -m1 GitVersion

# kubectl: the tests make AdmissionReview objects with it and build deploy/kubernetes with its
# built-in kustomize, which must be v5 (kubectl 1.27 or later). One on PATH that new enough is used.
kubectl_minor() { "$1" version --client -o json 2>/dev/null | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -1; }
if [ ! -x .tools/bin/kubectl ]; then
  if command -v kubectl >/dev/null 2>&1 && [ "$(kubectl_minor kubectl)" -ge 27 ] 2>/dev/null; then
    mkdir -p .tools/bin && ln -sf "$(command -v kubectl)" .tools/bin/kubectl
  else
    trixie kubectl kubectl
  fi
fi
.tools/bin/kubectl version --client 2>/dev/null | head -1

# promtool (test/deploy/alerts.test.ts checks and unit-tests the PrometheusRule alerts), unpacked
# from Debian's prometheus package into .tools/ so no Prometheus service is installed or started.
promtool=.tools/bin/promtool
if [ ! -x "$promtool" ]; then
  echo "fetching promtool (Debian's prometheus package) into .tools/"
  pwork=$(mktemp -d)
  mkdir -p .tools/bin
  (cd "$pwork" && apt-get download -q prometheus >/dev/null 2>&1) || { apt-get update -q >/dev/null && (cd "$pwork" && apt-get download -q prometheus >/dev/null); }
  dpkg-deb -x "$pwork"/prometheus_*.deb "$pwork/root"
  install -m 0755 "$pwork/root/usr/bin/promtool" "$promtool"
fi
"$promtool" --version 2>&1 | head -1

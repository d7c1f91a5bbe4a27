#!/usr/bin/env bash
# Installs what building and testing Image Cleaner needs on a fresh Debian machine:
# containerd and runc (the real runtime the tests drive), protoc (the CRI and containerd
# bindings are generated at build time), busybox-static (a base layer with /bin/sleep for
# fixture images), gcc/libc (a static pause binary), libsqlite3-dev (the rpm database
# reader links SQLite), python3-apt and rpm (the reference Debian and RPM version orderings
# the scanner is tested against; rpm also writes the rpm database fixtures), db5.3-util
# (writes them again as a Berkeley DB `Packages`) and kubectl (Debian's kubernetes-client,
# which the test cluster's tests drive; any kubectl already on PATH will do). Skips what is
# already there.
set -euo pipefail

packages=(containerd runc protobuf-compiler busybox-static gcc libc6-dev ca-certificates libsqlite3-dev python3-apt rpm db5.3-util)
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not on PATH; install a Rust toolchain (rustup) first" >&2
  exit 1
fi

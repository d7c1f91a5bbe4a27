#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what it needs, then runs every
# test. Tests that need a runtime start their own private containerd (testkit) and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# Regenerates the checked-in YAML that is rendered from the Rust types: the CRDs under
# deploy/crds/. crates/api/tests/crds.rs fails when the checked-in copies drift.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q --bin imagecleaner -- crds --split deploy/crds

#!/usr/bin/env bash
# Regenerates the checked-in YAML that is rendered from the Rust types: the CRDs under
# deploy/crds/ and the whole install, deploy/imagecleaner.yaml. crates/api/tests/crds.rs and
# crates/manager/tests/manifests.rs fail when the checked-in copies drift.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q --bin imagecleaner -- crds --split deploy/crds
cargo run -q --bin imagecleaner -- manifests > deploy/imagecleaner.yaml

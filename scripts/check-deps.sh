#!/usr/bin/env bash
# Dependencies point one way: the policy core knows nothing of Kubernetes, gRPC or tokio.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=$(cargo tree -e normal -p image-cleaner-core --prefix none 2>/dev/null | grep -E '^(kube|k8s-openapi|tonic|prost|tokio) ' || true)
if [[ -n "$bad" ]]; then
  echo "image-cleaner-core must not depend on: $bad" >&2
  exit 1
fi
echo "check-deps: image-cleaner-core depends on no Kubernetes, gRPC or async runtime crate"

# The scanner reads files and byte streams only: no runtime client, no network, no async.
bad=$(cargo tree -e normal -p image-cleaner-scanner --prefix none 2>/dev/null | grep -E '^(kube|k8s-openapi|tonic|prost|tokio|hyper|reqwest|image-cleaner-cri) ' || true)
if [[ -n "$bad" ]]; then
  echo "image-cleaner-scanner must not depend on: $bad" >&2
  exit 1
fi
echo "check-deps: image-cleaner-scanner depends on no runtime client, network or async crate"
# The manager talks to the API server only: it never links the runtime client or gRPC.
bad=$(cargo tree -e normal -p image-cleaner-manager --prefix none 2>/dev/null | grep -E '^(tonic|prost|k8s-cri|image-cleaner-cri|image-cleaner-node) ' || true)
if [[ -n "$bad" ]]; then
  echo "image-cleaner-manager must not depend on: $bad" >&2
  exit 1
fi
echo "check-deps: image-cleaner-manager links no runtime client and no gRPC"

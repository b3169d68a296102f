#!/usr/bin/env bash
# Breaking-change gate: compare openapi.yaml with the last released contract (contract/released.yaml,
# updated only by `make release-contract`). A breaking change (oasdiff level ERR) fails unless the
# major version in info.version has moved up since that release.
set -euo pipefail
cd "$(dirname "$0")/.."
OASDIFF=${OASDIFF:-go run github.com/oasdiff/oasdiff@v1.35.0}

major() { # major of info.version in $1
  awk '/^info:/ {i=1; next} i && /^[^ ]/ {exit} i && /^  version:/ {v=$2; gsub(/["\047]/, "", v); split(v, p, "."); print p[1]; exit}' "$1"
}
released=$(major contract/released.yaml)
current=$(major openapi.yaml)
if ! [[ "$released" =~ ^[0-9]+$ && "$current" =~ ^[0-9]+$ ]]; then
  echo "contract: cannot read info.version (released '$released', current '$current')" >&2
  exit 1
fi
if (( current < released )); then
  echo "contract: info.version major went down ($released -> $current)" >&2
  exit 1
fi
if (( current > released )); then
  echo "contract: major version $released -> $current: breaking changes are allowed until the next 'make release-contract'. They are:"
  $OASDIFF breaking --format singleline contract/released.yaml openapi.yaml
  exit 0
fi
echo "contract: checking for breaking changes against the released contract (major $released)"
$OASDIFF breaking --fail-on ERR contract/released.yaml openapi.yaml
echo "contract: no breaking change"

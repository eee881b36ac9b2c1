#!/usr/bin/env bash
# Regenerates openapi.json (served at GET /openapi.json) from openapi.yaml,
# the document people edit. tests/openapi.rs fails when the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import json, yaml
with open("openapi.yaml") as f:
    doc = yaml.safe_load(f)
with open("openapi.json", "w") as f:
    json.dump(doc, f, indent=1, sort_keys=False)
    f.write("\n")
PY

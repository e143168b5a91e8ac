#!/usr/bin/env bash
# Run one pytest suite with its own log and a closing "N passed, N failed" line.
# usage: tests/run_suite.sh NAME PYTEST-ARGS...
set -uo pipefail
name=$1; shift
cd "$(dirname "$0")/.."
mkdir -p logs
log="logs/$name.log"
xml="logs/$name.xml"
echo "== suite $name (log: $log)"
.venv/bin/python -m pytest -q --junitxml="$xml" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
(.venv/bin/python - "$xml" "$name" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(f"{sys.argv[2]}: 0 passed, 1 failed (no results)")
    sys.exit(0)
suites = [root] if root.tag == "testsuite" else list(root)
tests = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(f"{sys.argv[2]}: {tests - failed - skipped} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
) | tee -a "$log"
exit $status

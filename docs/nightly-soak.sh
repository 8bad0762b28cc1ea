#!/usr/bin/env bash
# Nightly soak: run a service under load for a set time, fail on leaks or budgets,
# keep the history between nights, publish the HTML report and the JUnit file.
# Usage: docs/nightly-soak.sh [DURATION]   (e.g. 30m; default 10m)
set -euo pipefail
DURATION="${1:-10m}"
OUT="reports/nightly-$(date +%Y%m%d-%H%M%S)"
HISTORY="${HEAPWATCH_HISTORY:-reports/soak-history.sqlite}"

# A scenario service stands in for yours (SERVICE), and LOAD_CMD for your load generator
# (e.g. "wrk -t2 -c20 http://127.0.0.1:8080/"); it runs during the load phase only.
SERVICE="${SERVICE:-python scenarios/throttle_map/throttle_map.py}"
LOAD_CMD="${LOAD_CMD:-sleep 1000000}"
set +e
# shellcheck disable=SC2086 # SERVICE is a command line
heapwatch soak \
  --interval "${INTERVAL:-5s}" --min-window "${MIN_WINDOW:-60s}" \
  --phase "baseline=${BASELINE:-2m}" \
  --phase "load=${DURATION}:${LOAD_CMD}" \
  --phase "after=${AFTER:-2m}" \
  --budget rss-growth=5MB/h --budget fds-growth=0/h --budget threads-max=64 \
  --fail-on leak,budget \
  --junit "$OUT/junit.xml" --history "$HISTORY" --out "$OUT" \
  -- $SERVICE
code=$?
set -e
echo "report: $OUT/report.html   junit: $OUT/junit.xml   exit: $code"
heapwatch history "$HISTORY" --last 7 || true
# 0 pass, 1 leak or budget exceeded, 2 usage error, 3 the service itself failed, 130 interrupted
exit "$code"

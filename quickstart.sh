#!/usr/bin/env bash
# From a fresh clone: install openscore into .venv, build the sample models, serve the scikit-learn
# sample entry script, score it twice (a good and a bad request), and stop the server.
set -euo pipefail
cd "$(dirname "$0")"

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[cpu,opencl,samples,router,test]'
.venv/bin/python entry_scripts/make_models.py

port=${PORT:-5001}
cd entry_scripts/sklearn_json
../../.venv/bin/openscore serve --entry-script score.py --model-dir azureml-models/sklearn_json/1 \
  --host 127.0.0.1 --port "$port" > /tmp/openscore-quickstart.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== POST /score (two rows)"
curl -s -i -X POST "http://127.0.0.1:$port/score" -H 'Content-Type: application/json' \
  -d '{"data": [[0.04, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02], [-0.01, -0.04, -0.05, -0.03, -0.01, -0.02, 0.07, -0.04, -0.07, -0.09]]}'
echo; echo "== POST /score (bad input: the script returns its error string, Azure-style)"
curl -s -X POST "http://127.0.0.1:$port/score" -H 'Content-Type: application/json' -d '{"data": "oops"}'
echo; echo "== server log"; cat /tmp/openscore-quickstart.log

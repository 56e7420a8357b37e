#!/usr/bin/env bash
# From a fresh clone: install openscore into .venv, build the sample models, serve the scikit-learn
# sample entry script, score it twice (a good and a bad request), and stop the server.
#
#   ./quickstart.sh                       # setup, then serve on 127.0.0.1:5001 and score
#   PORT=5002 ./quickstart.sh             # another port (a port in use is an error, never scored)
#   QUICKSTART_SETUP=0 ./quickstart.sh    # skip the setup: serve and score with an existing install
#
# Variables: PORT (5001); QUICKSTART_SETUP (1; 0 skips venv, pip and model building, building only the
# sklearn_json model when it is missing); OPENSCORE_PYTHON (.venv/bin/python): the interpreter that has
# openscore installed; QUICKSTART_READY_S (120): how long the server may take to become ready.
# Exit codes: 0 both requests answered; 1 the server failed (its log is printed) or a request failed.
set -euo pipefail
cd "$(dirname "$0")"
root=$PWD

say() { echo "quickstart: $*" >&2; }

if [ "${QUICKSTART_SETUP:-1}" != 0 ]; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[cpu,opencl,samples,router,test]'
  .venv/bin/python entry_scripts/make_models.py
fi

py=${OPENSCORE_PYTHON:-$root/.venv/bin/python}
if ! "$py" -c 'import openscore.runtime' 2>/dev/null; then
  say "error: $py cannot import openscore; run ./quickstart.sh without QUICKSTART_SETUP=0 first"
  exit 1
fi
app=entry_scripts/sklearn_json
[ -f "$app/azureml-models/sklearn_json/1/model.pkl" ] || "$py" entry_scripts/make_models.py sklearn_json >/dev/null

port=${PORT:-5001}
url="http://127.0.0.1:$port"
log=$(mktemp "${TMPDIR:-/tmp}/openscore-quickstart.XXXXXX.log")
say "server log: $log"

# Nothing is sent to the port before the server says it holds it ("Listening on ..." in its log): when the port
# is taken the server exits (code 1) instead, so another process on that port is never scored.
(cd "$app" && exec "$py" -m openscore serve --entry-script score.py --model-dir azureml-models/sklearn_json/1 \
  --host 127.0.0.1 --port "$port") >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT

failed() {  # message; prints the server log and exits 1
  say "error: $1; the server log ($log):"
  cat "$log" >&2
  if grep -q "Address already in use" "$log"; then
    say "port $port is taken by another process: run PORT=<a free port> ./quickstart.sh"
  fi
  exit 1
}
alive() {  # fails (with the log) once the server has exited
  kill -0 "$server" 2>/dev/null && return 0
  code=0; wait "$server" || code=$?
  trap - EXIT
  failed "the server exited with code $code before it was ready"
}

ready_s=${QUICKSTART_READY_S:-120}
deadline=$((SECONDS + ready_s))
until grep -q "Listening on $url " "$log"; do
  alive
  [ "$SECONDS" -lt "$deadline" ] || failed "the server did not listen on $url within $ready_s s"
  sleep 0.1
done
until curl -fs --max-time 5 -o /dev/null "$url/readyz"; do
  alive
  [ "$SECONDS" -lt "$deadline" ] || failed "the server was not ready after $ready_s s"
  sleep 0.25
done

score() {  # title, body; prints the response, fails unless it is a 200
  echo "== POST /score ($1)"
  status=$(curl -s --max-time 60 -o "$log.body" -D "$log.headers" -w '%{http_code}' -X POST "$url/score" \
    -H 'Content-Type: application/json' -d "$2") || status=000
  cat "$log.headers" "$log.body" 2>/dev/null; echo
  rm -f "$log.headers" "$log.body"
  [ "$status" = 200 ] || failed "POST /score ($1) answered HTTP $status"
}
score "two rows" '{"data": [[0.04, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02], [-0.01, -0.04, -0.05, -0.03, -0.01, -0.02, 0.07, -0.04, -0.07, -0.09]]}'
score "bad input: the script returns its error string, Azure-style, as a 200" '{"data": "oops"}'

kill "$server"; wait "$server" || true
trap - EXIT
echo "== server log ($log)"; cat "$log"

#!/usr/bin/env bash
# From a fresh clone: install openscore into .venv, build the sample models, then the whole deploy journey of
# Azure's "deploy a model" page on the embedded local target: register the scikit-learn sample model, deploy it
# with entry_scripts/deploy/inferenceconfig.json and deploymentconfig.json, show the service, get its keys,
# score it through the workspace's router with the key, and print what to do next. The service and its router
# keep running afterwards; `./quickstart.sh stop` stops them.
#
#   ./quickstart.sh                       # setup, then the deploy journey (router on 127.0.0.1:5001)
#   PORT=5002 ./quickstart.sh             # the router's port, when this run starts it (a port in use: exit 1)
#   QUICKSTART_SETUP=0 ./quickstart.sh    # skip the setup: use an existing install
#   ./quickstart.sh stop                  # stop the quickstart workspace's router (it stops its replicas)
#   ./quickstart.sh serve                 # the old path: `openscore serve` on one sample, score it, stop it
#
# Variables: PORT (5001): where the workspace's router is started (a router of this workspace that already runs
# is reused wherever it listens); QUICKSTART_SETUP (1; 0 skips venv, pip and model building, building only the
# sklearn_json model when it is missing); OPENSCORE_PYTHON (.venv/bin/python): the interpreter that has openscore
# installed; QUICKSTART_WORKSPACE (.openscore-quickstart in the clone): the workspace folder (never
# ~/.openscore); QUICKSTART_INFERENCE_CONFIG (entry_scripts/deploy/inferenceconfig.json): the inference config
# deployed; QUICKSTART_READY_S (120): how long the service may take to become Healthy.
# Exit codes: 0 the service answered; 1 a step failed (its output, the router's log and the replicas' logs are
# printed; a router this run started is stopped again).
set -euo pipefail
cd "$(dirname "$0")"
root=$PWD
mode=${1:-deploy}

say() { echo "quickstart: $*" >&2; }

case "$mode" in
  deploy|serve|stop) ;;
  *) say "error: unknown command '$mode' (use: ./quickstart.sh [deploy|serve|stop])"; exit 1 ;;
esac

if [ "$mode" != stop ] && [ "${QUICKSTART_SETUP:-1}" != 0 ]; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[cpu,opencl,samples,router,test,deployer,kubernetes]'
  .venv/bin/python entry_scripts/make_models.py
fi

py=${OPENSCORE_PYTHON:-$root/.venv/bin/python}
if ! "$py" -c 'import openscore.runtime, openscore.deployer' 2>/dev/null; then
  say "error: $py cannot import openscore (with its deployer); run ./quickstart.sh without QUICKSTART_SETUP=0 first"
  exit 1
fi
app=entry_scripts/sklearn_json
model_file=$app/azureml-models/sklearn_json/1/model.pkl
if [ "$mode" != stop ] && [ ! -f "$model_file" ]; then
  "$py" entry_scripts/make_models.py sklearn_json >/dev/null
fi
port=${PORT:-5001}
if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
  say "error: PORT must be a port number (1-65535), got '$port'"
  exit 1
fi
ready_s=${QUICKSTART_READY_S:-120}

# ================================================================== serve: one sample, directly, then stopped
serve_one() {
  local url="http://127.0.0.1:$port" log server
  log=$(mktemp "${TMPDIR:-/tmp}/openscore-quickstart.XXXXXX.log")
  say "server log: $log"
  # Nothing is sent to the port before the server says it holds it ("Listening on ..." in its log): when the
  # port is taken the server exits (code 1) instead, so another process on that port is never scored.
  (cd "$app" && exec "$py" -m openscore serve --entry-script score.py --model-dir azureml-models/sklearn_json/1 \
    --host 127.0.0.1 --port "$port") >"$log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT

  failed() {  # message; prints the server log and exits 1
    say "error: $1; the server log ($log):"
    cat "$log" >&2
    if grep -q "Address already in use" "$log"; then
      say "port $port is taken by another process: run PORT=<a free port> ./quickstart.sh serve"
    fi
    exit 1
  }
  alive() {  # fails (with the log) once the server has exited
    kill -0 "$server" 2>/dev/null && return 0
    local code=0; wait "$server" || code=$?
    trap - EXIT
    failed "the server exited with code $code before it was ready"
  }

  local deadline=$((SECONDS + ready_s))
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
    local status
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
}

if [ "$mode" = serve ]; then
  serve_one
  exit 0
fi

# ================================================================== the deploy journey
ws=${QUICKSTART_WORKSPACE:-$root/.openscore-quickstart}
if [ "$mode" = stop ] && [ ! -d "$ws" ]; then
  say "no router of workspace $ws is running"
  exit 0
fi
mkdir -p "$ws"
ws=$(cd "$ws" && pwd)
# Only this workspace, whatever the caller's environment names (a user's own OPENSCORE_WORKSPACE, or a
# router port to look for, is not the quickstart's).
export OPENSCORE_WORKSPACE=$ws
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^OPENSCORE_ROUTER_' || true)
if [ -x "$(dirname "$py")/openscore" ]; then cli="$(dirname "$py")/openscore"; else cli="$py -m openscore"; fi
shown_cli=${cli#"$root/"}

# The router this workspace started, by the pid its record holds (deployer/local_router.py); empty if none runs.
router_pid() {
  "$py" - "$ws" <<'EOF'
import sys
from openscore.deployer.local_router import LocalRouter, pid_alive
rec = LocalRouter(sys.argv[1]).record()
print(rec.pid if rec is not None and pid_alive(rec.pid) else "")
EOF
}
stop_router() {  # SIGTERM by the recorded pid: the router drains and stops its replicas
  "$py" - "$ws" <<'EOF'
import sys
from openscore.deployer.local_router import LocalRouter
sys.exit(0 if LocalRouter(sys.argv[1]).stop() else 3)
EOF
}

if [ "$mode" = stop ]; then
  pid=$(router_pid)
  if [ -z "$pid" ]; then
    say "no router of workspace $ws is running"
    exit 0
  fi
  stop_router || true
  say "stopped the router of workspace $ws (pid $pid) and its replicas"
  exit 0
fi

model=diabetes-model
service=diabetes
deploy_dir=entry_scripts/deploy
ic=${QUICKSTART_INFERENCE_CONFIG:-$deploy_dir/inferenceconfig.json}
dc=$deploy_dir/deploymentconfig.json
if [ "$port" != 5001 ]; then  # the shipped file with the router's port changed
  dc=$ws/deploymentconfig.json
  "$py" - "$deploy_dir/deploymentconfig.json" "$dc" "$port" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["port"] = int(sys.argv[3])
open(sys.argv[2], "w").write(json.dumps(doc, indent=2) + "\n")
EOF
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/openscore-quickstart.XXXXXX")
trap 'rm -rf "$out"' EXIT
had_router=$(router_pid)

failed() {  # message, [output file]: the step's output, the router's and the replicas' logs; exit 1
  say "error: $1"
  if [ -n "${2:-}" ] && [ -s "$2" ]; then say "its output:"; cat "$2" >&2; fi
  if grep -qs "the port is in use by another program" "${2:-/dev/null}"; then
    say "port $port is taken by another process (it was not contacted): run PORT=<a free port> ./quickstart.sh"
  fi
  if [ -s "$ws/router/router.log" ]; then
    say "the router's log ($ws/router/router.log), last 40 lines but its access lines:"
    grep -v ' openscore.router.access - ' "$ws/router/router.log" | tail -n 40 >&2 || true
  fi
  # get-logs never starts a router (show would): it reads the replicas' log files
  if $cli service get-logs -n "$service" --num-lines 60 >"$out/replicas.log" 2>/dev/null; then
    say "the replicas' logs (openscore service get-logs -n $service):"
    cat "$out/replicas.log" >&2
  fi
  if [ -z "$had_router" ] && [ -n "$(router_pid)" ]; then
    stop_router || true
    say "stopped the router this run had started"
  fi
  exit 1
}
step() {  # title, openscore's arguments...: runs it, shows it and its output, fails loudly unless it exits 0
  local title=$1 file; shift
  steps=$((steps + 1))
  file="$out/step$steps.out"
  echo "== $title"
  echo "\$ openscore $*"
  local code=0
  # shellcheck disable=SC2086
  $cli "$@" >"$file" 2>&1 || code=$?
  cat "$file"
  [ "$code" = 0 ] || failed "step '$title' failed (exit code $code)" "$file"
  last=$file
}
json_field() {  # file, python expression over the document `d` (the JSON that ends the file)
  "$py" - "$1" "$2" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
start = 0 if text.startswith("{") else text.index("\n{") + 1
d = json.loads(text[start:])
print(eval(sys.argv[2], {"d": d}))
EOF
}
steps=0

say "workspace: $ws"
step "register the model" model register -n "$model" -p "$model_file" --tag sample=sklearn_json
version=$(json_field "$last" 'd["version"]')
step "deploy it: $model:$version as service $service" model deploy -n "$service" -m "$model:$version" \
  --ic "$ic" --dc "$dc" --overwrite --timeout "$ready_s" -o table
step "show the service" service show -n "$service"
state=$(json_field "$last" 'd["state"]')
uri=$(json_field "$last" 'd["scoringUri"]')
swagger=$(json_field "$last" 'd["swaggerUri"]')
[ "$state" = Healthy ] || failed "service $service is $state, not Healthy" "$last"
step "get its keys" service get-keys -n "$service"
key=$(json_field "$last" 'd["primaryKey"]')

echo "== score it through the router with its key"
echo "\$ curl -H \"Authorization: Bearer \$KEY\" -H 'Content-Type: application/json' -d @$deploy_dir/data.json $uri"
code=0
status=$(curl -s --max-time 60 -o "$out/score.body" -D "$out/score.headers" -w '%{http_code}' -X POST "$uri" \
  -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d @"$deploy_dir/data.json") || code=$?
cat "$out/score.headers" "$out/score.body" 2>/dev/null; echo
[ "$code" = 0 ] && [ "$status" = 200 ] || failed "scoring $uri answered HTTP $status (curl exit $code)" \
  "$out/score.body"
echo "== without the key the router refuses it"
status=$(curl -s --max-time 30 -o "$out/nokey.body" -w '%{http_code}' -X POST "$uri" \
  -H 'Content-Type: application/json' -d @"$deploy_dir/data.json") || status=000
echo "HTTP $status $(cat "$out/nokey.body" 2>/dev/null)"
[ "$status" = 401 ] || failed "scoring without a key answered HTTP $status, not 401" "$out/nokey.body"

pid=$(router_pid)
stop_cmd="./quickstart.sh stop"
[ "$ws" = "$root/.openscore-quickstart" ] || stop_cmd="QUICKSTART_WORKSPACE=$ws ./quickstart.sh stop"
cat <<EOF

== next steps
Service $service is Healthy on the embedded local target; it keeps running.
  scoring URI:  $uri
  swagger URI:  $swagger
  primary key:  $key
  workspace:    $ws   (export OPENSCORE_WORKSPACE=$ws, or pass --workspace, to use it)
Score it:
  curl -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d @$deploy_dir/data.json $uri
  OPENSCORE_WORKSPACE=$ws $shown_cli service run -n $service -d @$deploy_dir/data.json
Look at it:
  OPENSCORE_WORKSPACE=$ws $shown_cli service get-logs -n $service
  OPENSCORE_WORKSPACE=$ws $shown_cli service list -o table
Delete the service:
  OPENSCORE_WORKSPACE=$ws $shown_cli service delete -n $service
Stop the router (pid $pid) and its replicas:
  $stop_cmd        (or: kill $pid)
EOF

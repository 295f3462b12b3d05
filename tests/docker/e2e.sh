#!/usr/bin/env bash
# Docker end-to-end test: shoal's image as users run it, two nodes sharing a model over
# BitTorrent, on a private Docker network with an ollama-like fake upstream.
#
#   1. docker/prepare (base images, docker/crates) and `docker build` of shoal:local
#   2. an --internal bridge network with: the fake upstream (tests/docker/fake_upstream.py;
#      registry on `registry:5000`, its "CDN" on `cdn:5001`), a client container, and two
#      shoal containers, `shoal1` and `shoal2 --peer http://shoal1:9200`, both with
#      --no-discovery (multicast must not leave the machine), both reaching "healthy"
#      through the image's own HEALTHCHECK
#   3. a pull through shoal1 as ollama does it: the Go stand-in for ollama
#      (../shared/tools/ollama-pull, built statically here) with HTTPS_PROXY=shoal1 and
#      shoal1's CA (`GET /_shoal/v1/ca.pem`) trusted, `tiny:1b` under its plain name.
#      Without that source (a clone on its own) or without `go`, a Python client pulls in
#      mirror mode instead (say so in the output; REQUIRE_E2E_TOOLS=1 makes missing `go`
#      a failure)
#   4. the same model through shoal2 (Python client, mirror mode): every digest checks,
#      shoal2's /_shoal/v1/stats says upstream_bytes == 0 and peer_bytes == the model's
#      bytes (it came from shoal1 over BitTorrent), and the fake upstream served nothing more
#
# Prints PASS or FAIL, the image size and the time taken. Bounded (SHOAL_E2E_TIMEOUT,
# default 2400 s: a cold run makes the base images and compiles shoal, about 20 minutes
# on 2 cores shared with other builds; a warm one takes 20 s). Removes its containers,
# their volumes and its network on exit. Keeps the images (shoal-build-base,
# shoal-runtime-base, shoal:local and the build stage's layers) so that the next run is
# quick; when a rebuild replaces them, removes the previous shoal:local and build stage.
#
# Needs docker and root (docker/prepare runs debootstrap the first time). Without a
# Docker daemon it prints SKIPPED and exits 0, unless REQUIRE_E2E_TOOLS=1.
set -euo pipefail

if [ -z "${SHOAL_E2E_UNDER_TIMEOUT:-}" ]; then
    # timeout signals the whole process group (docker clients included); the trap below
    # then cleans up.
    SHOAL_E2E_UNDER_TIMEOUT=1 exec timeout -k 60 "${SHOAL_E2E_TIMEOUT:-2400}" "$0" "$@"
fi

repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/tests/docker
image=${SHOAL_E2E_IMAGE:-shoal:local}
build_base=shoal-build-base:bookworm
run=shoal-e2e-$$
model=library/tiny:1b
t0=$SECONDS

log() { printf '[docker-e2e %4ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() {
    log "FAIL: $*"
    exit 1
}

if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    msg="no usable Docker daemon (docker info failed)"
    [ "${REQUIRE_E2E_TOOLS:-}" = 1 ] && fail "$msg; REQUIRE_E2E_TOOLS=1 makes this a failure"
    log "SKIPPED: $msg"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-e2e.XXXXXX")
containers=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$rc" != 0 ] && [ "${#containers[@]}" -gt 0 ]; then
        for c in "${containers[@]}"; do
            echo "----- last lines of $c"
            docker logs --tail 40 "$c" 2>&1 | sed 's/^/  /' || true
        done
    fi
    [ "${#containers[@]}" -gt 0 ] && docker rm -f -v "${containers[@]}" >/dev/null 2>&1 || true
    docker network rm "$run" >/dev/null 2>&1 || true
    rm -rf "$tmp"
    if [ "$rc" = 0 ]; then
        log "PASS ($((SECONDS - t0)) s)"
    else
        log "FAIL (exit $rc, $((SECONDS - t0)) s)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted (or out of time: SHOAL_E2E_TIMEOUT=${SHOAL_E2E_TIMEOUT:-2400} s)"; exit 143' INT TERM

# --- 1. images
log "docker/prepare"
"$repo/docker/prepare" >"$tmp/prepare.log" 2>&1 || {
    cat "$tmp/prepare.log"
    fail "docker/prepare"
}
sed 's/^/  /' "$tmp/prepare.log"

log "docker build -t $image (legacy builder)"
old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
b0=$SECONDS
# The offline path (CI cannot pull): docker/prepare's local bases through the ARGs.
DOCKER_BUILDKIT=0 docker build -f "$repo/docker/Dockerfile" -t "$image" \
    --build-arg BUILD_BASE=shoal-build-base:bookworm \
    --build-arg RUNTIME_BASE=shoal-runtime-base:bookworm "$repo" >"$tmp/build.log" 2>&1 || {
    tail -n 60 "$tmp/build.log"
    fail "docker build"
}
new=$(docker image inspect -f '{{.Id}}' "$image")
if [ -n "$old" ] && [ "$old" != "$new" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true # still used by a container: keep it
fi
# The build stage of earlier builds (hundreds of MB each): its last image is labelled;
# removing it removes its untagged parents too, up to the layers this build still uses.
stage=$(awk '/^Step [0-9\/]+ : LABEL org.shoal.stage=build/ { f = 1 } f && /^ ---> [0-9a-f]+$/ { print $2; exit }' "$tmp/build.log")
for id in $(docker images -a -q --filter label=org.shoal.stage=build); do
    [ "$id" = "$stage" ] || docker rmi "$id" >/dev/null 2>&1 || true
done
size=$(docker image inspect -f '{{.Size}}' "$image")
log "built in $((SECONDS - b0)) s; $image is $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.1f MB", s/1e6}'))"

if command -v docker-compose >/dev/null; then
    docker-compose -f "$repo/docker/compose.yaml" config -q || fail "docker/compose.yaml does not parse"
fi

# --- the client of step 3: gopull when its source is beside the repository
gopull_src=$repo/../shared/tools/ollama-pull
gopull=""
if [ -f "$gopull_src/main.go" ]; then
    if command -v go >/dev/null; then
        mkdir -p "$tmp/bin"
        (cd "$gopull_src" && CGO_ENABLED=0 go build -buildvcs=false -o "$tmp/bin/gopull" .) \
            || fail "cannot build gopull from $gopull_src"
        gopull=/gopull/gopull
    elif [ "${REQUIRE_E2E_TOOLS:-}" = 1 ]; then
        fail "go is needed to build $gopull_src (apt-get install golang-go); REQUIRE_E2E_TOOLS=1 makes this a failure"
    else
        log "NOTE: go not found: the first pull uses the Python client in mirror mode"
    fi
else
    log "NOTE: $gopull_src not found: the first pull uses the Python client in mirror mode"
fi
mkdir -p "$tmp/bin" # mounted into the client container either way

# --- 2. the network and its containers
docker network create --internal --label "org.shoal.e2e=$run" "$run" >/dev/null
start() { # name, docker run args...
    local name=$run-$1
    shift
    containers+=("$name")
    docker run -d --name "$name" --label "org.shoal.e2e=$run" --network "$run" "$@" >/dev/null
}
start upstream --network-alias registry --network-alias cdn -v "$here:/t:ro" \
    "$build_base" python3 /t/fake_upstream.py --model "$model"
start client -v "$here:/t:ro" -v "$tmp/bin:/gopull:ro" "$build_base" sleep 3600
# Fast health checks and catalog fetches; everything else is the image's defaults.
shoal_args=(--health-interval 2s --health-start-period 60s -e SHOAL_P2P__CATALOG_INTERVAL=1s
    -e RUST_LOG=shoal=info,warn)
start shoal1 --network-alias shoal1 "${shoal_args[@]}" "$image" \
    --no-discovery --upstream http://registry:5000
start shoal2 --network-alias shoal2 "${shoal_args[@]}" "$image" \
    --no-discovery --upstream http://registry:5000 --peer http://shoal1:9200

in_client() { docker exec "$run-client" "$@"; }
client() { in_client python3 /t/client.py "$@"; }
json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.readlines()[-1])[sys.argv[1]])' "$1"; }

log "waiting for both shoal containers to be healthy (the image's HEALTHCHECK: shoal health)"
deadline=$((SECONDS + 90))
for c in shoal1 shoal2; do
    while :; do
        state=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$run-$c")
        [ "$state" = "running healthy" ] && break
        case "$state" in running*) ;; *) fail "$c is $state" ;; esac
        if [ $SECONDS -ge $deadline ]; then
            docker inspect -f '{{json .State.Health}}' "$run-$c"
            fail "$c is not healthy after 90 s ($state)"
        fi
        sleep 1
    done
done
client wait-ok http://shoal1:9200/_shoal/v1/health http://shoal2:9200/_shoal/v1/health \
    http://registry:5000/_fake/model >/dev/null || fail "health endpoints, or the fake upstream"
log "healthy: $(docker ps --filter "label=org.shoal.e2e=$run" --format '{{.Names}}={{.Status}}' | grep shoal | tr '\n' ' ')"

model_json=$(client json http://registry:5000/_fake/model)
total=$(python3 -c 'import json,sys; print(sum(b["size"] for b in json.loads(sys.argv[1])["blobs"]))' "$model_json")
nblobs=$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["blobs"]))' "$model_json")
manifest_digest=$(json_field manifest_digest <<<"$model_json")
log "model $model: $nblobs blobs, $total bytes, manifest $manifest_digest"

stat_of() { client json "http://$1:9200/_shoal/v1/stats" | json_field "$2"; }

# --- 3. the first pull, through shoal1
if [ -n "$gopull" ]; then
    log "pull 1: gopull ${model#library/} with HTTPS_PROXY=http://shoal1:9200 and shoal1's CA"
    client fetch http://shoal1:9200/_shoal/v1/ca.pem /tmp/shoal1-ca.pem >/dev/null || fail "GET /_shoal/v1/ca.pem"
    out=$(in_client env HTTPS_PROXY=http://shoal1:9200 SSL_CERT_FILE=/tmp/shoal1-ca.pem \
        "$gopull" -quiet -models /tmp/models1 -min-part 1048576 "${model#library/}") \
        || fail "gopull through shoal1: $out"
    [ "$(json_field manifest_sha256 <<<"$out")" = "${manifest_digest#sha256:}" ] \
        || fail "manifest digest differs: $out"
    in_client test -f "/tmp/models1/manifests/registry.ollama.ai/${model/://}" \
        || fail "gopull did not file the manifest under registry.ollama.ai/${model/://}"
else
    log "pull 1: Python client, mirror mode, through http://shoal1:9200"
    out=$(client pull http://shoal1:9200 http://registry:5000/_fake/model) || fail "pull through shoal1: $out"
fi
[ "$(json_field bytes <<<"$out")" = "$total" ] || fail "pull 1 got other bytes: $out"
log "pull 1 ok: $(tail -n1 <<<"$out" | cut -c1-200)"
# Not exactly $total: ranges cut short when the fill re-plans them are counted too.
up1=$(stat_of shoal1 upstream_bytes)
cdn1=$(client json http://registry:5000/_fake/stats | json_field cdn_bytes)
log "shoal1: upstream_bytes=$up1; fake CDN bytes sent: $cdn1"
[ "$up1" -ge "$total" ] || fail "shoal1 upstream_bytes = $up1, want at least $total"

# --- 4. the second node gets it from the first, over BitTorrent
log "waiting for shoal2 to list shoal1 holding $nblobs blobs"
client wait-peer-blobs http://shoal2:9200 http://shoal1:9200 "$nblobs" --timeout 60 >/dev/null \
    || fail "shoal2 never learnt shoal1's catalog"
log "pull 2: Python client, mirror mode, through http://shoal2:9200"
out=$(client pull http://shoal2:9200 http://registry:5000/_fake/model) || fail "pull through shoal2: $out"
[ "$(json_field bytes <<<"$out")" = "$total" ] || fail "pull 2 got other bytes: $out"
stats2=$(client json http://shoal2:9200/_shoal/v1/stats)
up2=$(json_field upstream_bytes <<<"$stats2")
peer2=$(json_field peer_bytes <<<"$stats2")
# shoal counts uploads into seeded_bytes every 5 s.
deadline=$((SECONDS + 20))
while seeded1=$(stat_of shoal1 seeded_bytes) && [ "$seeded1" -lt "$total" ] && [ $SECONDS -lt $deadline ]; do
    sleep 1
done
cdn2=$(client json http://registry:5000/_fake/stats | json_field cdn_bytes)
log "shoal2: upstream_bytes=$up2 peer_bytes=$peer2; shoal1: seeded_bytes=$seeded1; fake CDN bytes: $cdn1 then $cdn2"
[ "$up2" = 0 ] || fail "shoal2 fetched $up2 bytes from upstream, want 0: $stats2"
[ "$peer2" = "$total" ] || fail "shoal2 peer_bytes = $peer2, want $total: $stats2"
[ "$seeded1" -ge "$total" ] || fail "shoal1 seeded_bytes = $seeded1, want at least $total"
[ "$cdn2" = "$cdn1" ] || fail "the fake upstream's CDN served $((cdn2 - cdn1)) more bytes"

log "image $image: $size bytes"

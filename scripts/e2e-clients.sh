#!/usr/bin/env bash
# Real client programs against `tollgate dev`: docker (a private dockerd
# the script starts), podman, skopeo, crane and containerd (ctr) pull
# through tollgate, and so does kubelet's CRI path (crictl against a
# private containerd with its CRI plugin), with a registry token, and each one is
# refused with a wrong, revoked or expired token and on a non-entitled
# image. A pull secret in the format `kubectl create secret
# docker-registry` writes is used as an auth file. apt runs the exact text
# `token show --reveal` prints, and the console's (read from the page after
# Reveal, shown to be the same bytes), in a private root; the console's
# kubectl lines run against a kubectl stand-in (no cluster here) that
# writes the secret's .dockerconfigjson, which skopeo then pulls with.
# apk: the text `token show --reveal` prints for apk-tools runs in a
# private root, whole where apk-tools is installed; here (Debian has no
# apk-tools) all but its apk lines, then the index and package fetched
# as apk-tools' libfetch fetches them and the index signature verified
# with the key the printed step installed (see the apk section).
#
# Two throwaway `tollgate dev` instances, each with its own data directory
# and a port the kernel picks:
#   plain  http://127.0.0.1:PORT   docker, podman, skopeo (and crane --insecure)
#   tls    https://127.0.0.1:PORT  crane, containerd, crictl, podman/skopeo with the CA
# The TLS one uses a throwaway CA made with openssl.
#
# Prints a PASS/FAIL/SKIP line per check and "N passed, M failed" at the
# end; exits 1 if a check failed. Tokens never reach the output: commands
# and logs are printed masked.
#
# A missing client is skipped, or a failure when TOLLGATE_TEST_REQUIRE_SERVICES=1
# (CI); with none installed and outside CI the whole script prints a skip.
# Daemons (dockerd, containerd) are started privately: their own roots,
# sockets and configs under the temporary directory, stopped by PID.
#
# Environment:
#   TOLLGATE_BIN=PATH   use this tollgate binary instead of building ./cmd/tollgate
#   E2E_ONLY="crane containerd"   run only these sections
#                       (docker podman skopeo crane containerd cri credprov dev apt apk console policy keyless usage)
#   E2E_KEEP=1          keep the temporary directory (it holds tokens!)
set -uo pipefail
cd "$(dirname "$0")/.."

CRANE_VERSION=v0.22.1
require=0
[ "${TOLLGATE_TEST_REQUIRE_SERVICES:-}" = 1 ] && require=1
ci=0
[ "${CI:-}" = true ] && ci=1

have() { command -v "$1" >/dev/null 2>&1; }

if [ $require = 0 ] && [ $ci = 0 ] && ! have docker && ! have podman && ! have skopeo && ! have containerd; then
  echo "e2e-clients: skipped: none of docker, podman, skopeo, containerd is installed (.ci/run installs them)"
  exit 0
fi

started=$SECONDS
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-e2e.XXXXXX")
chmod 700 "$tmp"
pids=()

cleanup() {
  local pid i
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${pids[@]}"; do
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # containerd unpacks through short-lived mounts; never leave one behind
  # (rm -rf would walk into it).
  if [ -r /proc/mounts ]; then
    awk -v p="$tmp/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
  fi
  if [ "${E2E_KEEP:-}" = 1 ]; then
    echo "e2e-clients: kept $tmp (it holds tokens: delete it)"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- output

npass=0 nfail=0 nskip=0 ncheck=0
secrets=() # literal strings that must never be printed

mask() {
  local s x
  s=$(cat)
  for x in "${secrets[@]}"; do
    [ -n "$x" ] && s=${s//"$x"/***}
  done
  printf '%s\n' "$s" | sed -E \
    -e 's/tg_[A-Za-z0-9]+/tg_***/g' \
    -e 's/tge_[A-Za-z0-9]+/tge_***/g' \
    -e 's/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/<jwt>/g' \
    -e 's/("(auth|password|identitytoken)" *: *")[^"]*/\1***/g' \
    -e 's/(password=)[^& ]*/\1***/g' \
    -e 's/(Authorization: *(Basic|Bearer) )[^ "]*/\1***/g'
}

pass() { npass=$((npass + 1)); echo "PASS $1"; }
skip() { nskip=$((nskip + 1)); echo "SKIP $1"; }
# fail DESC [LOG [CMD...]]: shows the masked command and the end of its output.
fail() {
  nfail=$((nfail + 1))
  echo "FAIL $1"
  if [ $# -ge 3 ]; then
    printf '  $ %s\n' "$(printf '%q ' "${@:3}" | mask)"
  fi
  if [ $# -ge 2 ] && [ -s "$2" ]; then
    tail -n 15 "$2" | mask | sed 's/^/  | /'
  fi
}
# missing DESC: a client that is not there: skipped, or a failure when required.
missing() {
  if [ $require = 1 ]; then fail "$1 (TOLLGATE_TEST_REQUIRE_SERVICES=1)"; else skip "$1"; fi
}

section_name="" section_start=0
section() {
  section_end
  section_name=$1 section_start=$SECONDS
  echo "== $1"
}
section_end() {
  [ -n "$section_name" ] && echo "   ($section_name: $((SECONDS - section_start))s)"
  section_name=""
}
want() { # want SECTION: is it selected by E2E_ONLY?
  [ -z "${E2E_ONLY:-}" ] && return 0
  case " $E2E_ONLY " in *" $1 "*) return 0 ;; esac
  return 1
}

# ok DESC CMD...: CMD must succeed. Its output is in $out afterwards.
out=""
ok() {
  local desc=$1
  shift
  ncheck=$((ncheck + 1))
  out="$tmp/logs/$ncheck.log"
  if "$@" >"$out" 2>&1 </dev/null; then
    pass "$desc"
    return 0
  fi
  fail "$desc" "$out" "$@"
  return 1
}
# refused DESC REGEX CMD...: CMD must fail, and its output must match the
# extended REGEX (case-insensitive), so that it failed for the right reason
# (an authorization answer, not a TLS or connection problem).
refused() {
  local desc=$1 re=$2
  shift 2
  ncheck=$((ncheck + 1))
  out="$tmp/logs/$ncheck.log"
  if "$@" >"$out" 2>&1 </dev/null; then
    fail "$desc (it succeeded; it must be refused)" "$out" "$@"
    return 1
  fi
  if grep -Eqi -- "$re" "$out"; then
    pass "$desc"
    return 0
  fi
  fail "$desc (it failed, but the output does not match /$re/)" "$out" "$@"
  return 1
}
# check DESC CMD...: a plain assertion on files already there (no output kept).
check() {
  local desc=$1
  shift
  if "$@" >/dev/null 2>&1 </dev/null; then pass "$desc"; else fail "$desc" "" "$@"; fi
}

mkdir -p "$tmp/logs" "$tmp/bin"

# ---------------------------------------------------------------- tollgate

section "setup"
if [ -n "${TOLLGATE_BIN:-}" ]; then
  tollgate=$TOLLGATE_BIN
else
  tollgate=$tmp/bin/tollgate
  t0=$SECONDS
  if ! go build -o "$tollgate" ./cmd/tollgate >"$tmp/logs/build.log" 2>&1; then
    fail "go build ./cmd/tollgate" "$tmp/logs/build.log"
    echo "$npass passed, $nfail failed"
    exit 1
  fi
  echo "   built tollgate in $((SECONDS - t0))s"
fi

# crane, pinned, from the Go module proxy (or the module cache).
crane=""
if want crane || want dev || want policy || want credprov; then
  t0=$SECONDS
  if (cd "$tmp" && GOBIN=$tmp/bin GOFLAGS= go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION") >"$tmp/logs/crane-build.log" 2>&1; then
    crane=$tmp/bin/crane
    echo "   built crane $CRANE_VERSION in $((SECONDS - t0))s"
  fi
fi

# The throwaway CA and server certificate for the TLS instance.
tls=0
if have openssl; then
  mkdir -p "$tmp/tls"
  if (
    cd "$tmp/tls" &&
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=tollgate e2e throwaway CA" -keyout ca.key -out ca.crt \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=localhost" -keyout server.key -out server.csr &&
      printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
        'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >server.ext &&
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile server.ext -out server.crt
  ) >"$tmp/logs/openssl.log" 2>&1; then
    tls=1
    # Go programs (crane, the tollgate CLI) take one bundle: system CAs + ours.
    cat /etc/ssl/certs/ca-certificates.crt "$tmp/tls/ca.crt" >"$tmp/tls/bundle.pem" 2>/dev/null ||
      cp "$tmp/tls/ca.crt" "$tmp/tls/bundle.pem"
  else
    fail "openssl: making the throwaway CA" "$tmp/logs/openssl.log"
  fi
else
  missing "openssl is not installed: no TLS instance (crane, containerd and the TLS checks need it)"
fi

# start_tollgate NAME [tls]: runs `tollgate dev` on 127.0.0.1:0 and sets
# NAME_url, NAME_host, NAME_token, NAME_image, NAME_denied, NAME_admin.
start_tollgate() {
  local name=$1 mode=${2:-} data=$tmp/$1 args=()
  args=(dev --data "$data" --listen 127.0.0.1:0)
  [ "$mode" = tls ] && args+=(--tls-cert "$tmp/tls/server.crt" --tls-key "$tmp/tls/server.key")
  # stdout carries the demo token: it goes to a file, never to the terminal.
  "$tollgate" "${args[@]}" >"$tmp/logs/$name.out" 2>"$tmp/logs/$name.err" &
  pids+=($!)
  local i
  for i in $(seq 1 150); do
    [ -s "$data/dev.env" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$data/dev.env" ]; then
    fail "tollgate dev ($name) did not start" "$tmp/logs/$name.err"
    return 1
  fi
  local TOLLGATE_URL="" TOLLGATE_ADMIN_KEY="" TOLLGATE_DEMO_TOKEN="" TOLLGATE_DEMO_IMAGE="" TOLLGATE_DENIED_IMAGE=""
  # shellcheck disable=SC1091
  . "$data/dev.env"
  secrets+=("$TOLLGATE_ADMIN_KEY" "$TOLLGATE_DEMO_TOKEN")
  local curlca=()
  [ "$mode" = tls ] && curlca=(--cacert "$tmp/tls/ca.crt")
  for i in $(seq 1 100); do
    curl -fsS "${curlca[@]}" -o /dev/null "$TOLLGATE_URL/healthz" 2>/dev/null && break
    sleep 0.1
  done
  if ! curl -fsS "${curlca[@]}" -o /dev/null "$TOLLGATE_URL/healthz" 2>"$tmp/logs/$name.health"; then
    fail "tollgate dev ($name): $TOLLGATE_URL/healthz" "$tmp/logs/$name.health"
    return 1
  fi
  printf -v "${name}_url" %s "$TOLLGATE_URL"
  printf -v "${name}_host" %s "${TOLLGATE_URL#*://}"
  printf -v "${name}_admin" %s "$TOLLGATE_ADMIN_KEY"
  printf -v "${name}_token" %s "$TOLLGATE_DEMO_TOKEN"
  printf -v "${name}_image" %s "$TOLLGATE_DEMO_IMAGE"
  printf -v "${name}_denied" %s "$TOLLGATE_DENIED_IMAGE"
  echo "   tollgate dev ($name) at $TOLLGATE_URL"
}

# tg NAME ARGS...: the tollgate CLI against instance NAME.
tg() {
  local name=$1
  shift
  local url=${name}_url admin=${name}_admin
  TOLLGATE_URL=${!url} TOLLGATE_ADMIN_KEY=${!admin} SSL_CERT_FILE=$tmp/tls/bundle.pem "$tollgate" "$@"
}

# create_token NAME VAR ACCOUNT [ARGS...]: a fresh token of ACCOUNT made
# with the `token create` flags ARGS; sets VAR (the secret) and VAR_id.
create_token() {
  local name=$1 var=$2 account=$3 json id secret
  json=$(tg "$name" token create --account "$account" --name "e2e-$var-$RANDOM" "${@:4}" -o json 2>"$tmp/logs/token.err") || {
    fail "tollgate token create ($name)" "$tmp/logs/token.err"
    return 1
  }
  id=$(printf '%s\n' "$json" | sed -nE 's/^ *"id": *"([^"]+)".*/\1/p')
  secret=$(printf '%s\n' "$json" | sed -nE 's/^ *"secret": *"([^"]+)".*/\1/p')
  if [ -z "$id" ] || [ -z "$secret" ]; then
    fail "tollgate token create ($name): no id/secret in the JSON answer"
    return 1
  fi
  secrets+=("$secret")
  printf -v "$var" %s "$secret"
  printf -v "${var}_id" %s "$id"
}
# new_token NAME VAR [revoke|expire]: a fresh token of the demo account;
# sets VAR (the secret) and VAR_id.
new_token() {
  local name=$1 var=$2 then=${3:-} id
  create_token "$name" "$var" demo || return 1
  id=${var}_id
  id=${!id}
  case $then in
  revoke) tg "$name" token revoke "$id" >/dev/null 2>"$tmp/logs/token.err" || fail "tollgate token revoke ($name)" "$tmp/logs/token.err" ;;
  expire) tg "$name" token edit "$id" --expires now >/dev/null 2>"$tmp/logs/token.err" || fail "tollgate token edit --expires now ($name)" "$tmp/logs/token.err" ;;
  esac
}
revoke() { # revoke NAME ID
  tg "$1" token revoke "$2" >/dev/null 2>"$tmp/logs/token.err" || fail "tollgate token revoke ($1)" "$tmp/logs/token.err"
}

# A token that was never issued: right prefix, right length, garbage.
wrong_token=tg_$(head -c 200 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 36)

# dockerconfigjson FILE HOST TOKEN: the pull secret `kubectl create secret
# docker-registry --docker-server=HOST --docker-username=tollgate
# --docker-password=TOKEN` writes as .dockerconfigjson.
dockerconfigjson() {
  local auth
  auth=$(printf '%s' "tollgate:$3" | base64 | tr -d '\n')
  printf '{"auths":{"%s":{"username":"tollgate","password":"%s","auth":"%s"}}}\n' "$2" "$3" "$auth" >"$1"
}

# snippets FILE PATTERN: the paragraphs of a `token show` printout whose
# title line ("# TITLE") matches the extended PATTERN, as one script.
snippets() {
  awk -v RS= -v re="$2" '$0 ~ "^# (" re ")\n" { print $0 "\n" }' "$1"
}

# A stand-in for kubectl (there is no cluster here): `create secret
# docker-registry` writes the .dockerconfigjson kubectl would put in the
# secret (KUBE_DIR/NAME.dockerconfigjson); `patch serviceaccount` keeps
# the patch (KUBE_DIR/patch-NAME.json). Anything else is an error.
write_kubectl() {
  mkdir -p "$1"
  cat >"$1/kubectl" <<'KUBECTL'
#!/usr/bin/env bash
set -euo pipefail
case "$1 $2 ${3:-}" in
"create secret docker-registry")
  name=$4 server=https://index.docker.io/v1/ user="" pass=""
  shift 4
  for a in "$@"; do
    case $a in
    --docker-server=*) server=${a#*=} ;;
    --docker-username=*) user=${a#*=} ;;
    --docker-password=*) pass=${a#*=} ;;
    *) echo "kubectl stand-in: unexpected argument $a" >&2; exit 2 ;;
    esac
  done
  [ -n "$user" ] && [ -n "$pass" ] || { echo "kubectl stand-in: --docker-username and --docker-password are required" >&2; exit 2; }
  auth=$(printf '%s:%s' "$user" "$pass" | base64 | tr -d '\n')
  printf '{"auths":{"%s":{"username":"%s","password":"%s","auth":"%s"}}}\n' "$server" "$user" "$pass" "$auth" >"$KUBE_DIR/$name.dockerconfigjson"
  echo "secret/$name created" ;;
"patch serviceaccount "*)
  [ "$4" = -p ] || { echo "kubectl stand-in: want patch serviceaccount NAME -p PATCH" >&2; exit 2; }
  printf '%s\n' "$5" >"$KUBE_DIR/patch-$3.json"
  echo "serviceaccount/$3 patched" ;;
*) echo "kubectl stand-in: not supported: $*" >&2; exit 2 ;;
esac
KUBECTL
  chmod 755 "$1/kubectl"
}
# secret_creds FILE: USER:PASSWORD of a .dockerconfigjson's one entry,
# what kubelet decodes from a pull secret and hands the CRI.
secret_creds() { sed -nE 's/.*"auth":"([^"]+)".*/\1/p' "$1" | base64 -d; }

# hosts_toml DIR HOST: DIR/HOST/hosts.toml, what kubelet's containerd
# reads from /etc/containerd/certs.d: the registry's own server, trusted
# through our CA. containerd 1.6 insists on a [host] table; `server` and
# the root `ca` keep its fallback host on TLS too (without them it falls
# back to plain http for 127.0.0.1).
hosts_toml() {
  mkdir -p "$1/$2"
  printf '%s\n' "server = \"https://$2\"" "ca = \"$tmp/tls/ca.crt\"" '' \
    "[host.\"https://$2\"]" '  capabilities = ["pull", "resolve"]' "  ca = \"$tmp/tls/ca.crt\"" >"$1/$2/hosts.toml"
}

plain_ok=0 tls_ok=0
start_tollgate plain && plain_ok=1
[ $tls = 1 ] && start_tollgate tls tls && tls_ok=1

if [ $plain_ok = 1 ]; then
  new_token plain p_revoked revoke
  new_token plain p_expired expire
  dockerconfigjson "$tmp/plain.dockerconfigjson" "$plain_host" "$plain_token"
  # kubectl's own default --docker-server is a URL; clients normalize it.
  dockerconfigjson "$tmp/plain-url.dockerconfigjson" "https://$plain_host" "$plain_token"
fi
if [ $tls_ok = 1 ]; then
  new_token tls t_revoked revoke
  dockerconfigjson "$tmp/tls.dockerconfigjson" "$tls_host" "$tls_token"
fi

# Clients read credentials from $HOME, $XDG_RUNTIME_DIR, $DOCKER_CONFIG: point
# them all at empty throwaway places, so only what a check passes is used.
export HOME=$tmp/home XDG_RUNTIME_DIR=$tmp/xdg DOCKER_CONFIG=$tmp/docker-default
unset XDG_CONFIG_HOME REGISTRY_AUTH_FILE
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$DOCKER_CONFIG"
# podman stats $DOCKER_CONFIG/config.json as its default auth file when set.
echo '{"auths":{}}' >"$DOCKER_CONFIG/config.json"
chmod 700 "$XDG_RUNTIME_DIR"

# Patterns of a refusal by tollgate, as each client words it.
# (Precise on purpose: a TLS or connection error must not pass for a refusal.)
denied_re='unauthori[sz]ed|requested access to the resource is denied|pull access denied|insufficient_scope|authentication required|invalid username/password'

# ---------------------------------------------------------------- docker

# A private dockerd (Debian's docker.io): its own data root, exec root,
# pidfile, socket and config, all under $tmp; no iptables and no
# bridge. Nothing is written under /etc or /var/lib/docker. The cleanup
# stops it by PID (it stops its own containerd). dockerd allows plain
# http to 127.0.0.0/8 registries by default, so no daemon setting is
# needed for the plain instance. Sets DOCKER_HOST on success.
dockerd_pid=""
start_dockerd() {
  [ -n "$dockerd_pid" ] && return 0
  local dd=$tmp/dockerd driver i
  mkdir -p "$dd"
  # dockerd 20.10 keeps a libtrust key in /etc/docker/key.json unless told.
  printf '{"deprecated-key-path": "%s"}\n' "$dd/key.json" >"$dd/daemon.json"
  for driver in overlay2 vfs; do
    rm -rf "$dd/data" "$dd/exec"
    # In a mount namespace of its own where /etc/docker is an empty tmpfs:
    # what the printed steps install there (certs.d/HOST/ca.crt) is seen
    # by this dockerd alone (nsenter --mount --target $dockerd_pid).
    unshare --mount --propagation private bash -c 'mount -t tmpfs -o mode=755 tmpfs /etc/docker && exec "$@"' _ \
      dockerd --data-root "$dd/data" --exec-root "$dd/exec" --pidfile "$dd/dockerd.pid" \
      --host "unix://$dd/docker.sock" --config-file "$dd/daemon.json" \
      --iptables=false --ip6tables=false --bridge=none --storage-driver "$driver" \
      >"$tmp/logs/dockerd-$driver.log" 2>&1 &
    local pid=$!
    pids+=($pid)
    for i in $(seq 1 150); do
      DOCKER_HOST=unix://$dd/docker.sock docker version >/dev/null 2>&1 && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if DOCKER_HOST=unix://$dd/docker.sock docker version >/dev/null 2>&1; then
      export DOCKER_HOST=unix://$dd/docker.sock
      dockerd_pid=$pid
      echo "   private dockerd ($driver) on $DOCKER_HOST"
      return 0
    fi
    kill "$pid" 2>/dev/null
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    echo "   dockerd with --storage-driver $driver did not start: $(tail -n 1 "$tmp/logs/dockerd-$driver.log" | mask)"
  done
  fail "dockerd did not start (overlay2 nor vfs)" "$tmp/logs/dockerd-vfs.log"
  return 1
}

docker_login() { # docker_login CONFIGDIR HOST TOKEN
  printf '%s' "$3" | DOCKER_CONFIG=$1 docker login "$2" -u tollgate --password-stdin
}
docker_inspect() { # docker_inspect CONFIGDIR REF
  DOCKER_CONFIG=$1 DOCKER_CLI_EXPERIMENTAL=enabled docker manifest inspect --insecure "$2"
}
docker_pull() { # docker_pull CONFIGDIR REF
  DOCKER_CONFIG=$1 docker pull "$2"
}
no_creds_stored() { # no_creds_stored CONFIGDIR HOST
  [ ! -e "$1/config.json" ] || ! grep -qF "\"$2\"" "$1/config.json"
}
# run_printed CONFIGDIR FILE: runs FILE (text tollgate printed) as is, with
# the docker CLI's config in CONFIGDIR and the private daemon.
run_printed() {
  DOCKER_CONFIG=$1 bash -euo pipefail "$2"
}

if want docker; then
  section "docker (a private dockerd; plain http)"
  if ! have docker || ! have dockerd || ! have unshare; then
    missing "docker: the docker CLI or dockerd is not installed (apt-get install docker.io)"
  elif [ "$(id -u)" != 0 ]; then
    missing "docker: dockerd needs root"
  elif [ $plain_ok = 0 ]; then
    fail "docker: no tollgate instance"
  elif start_dockerd; then
    d=$tmp/docker
    echo "   $(docker version --format 'docker CLI {{.Client.Version}}, dockerd {{.Server.Version}}' 2>/dev/null)"
    # The exact "docker login" text `token show --reveal` prints, then the
    # pull and the run the `tollgate dev` printout gives.
    if new_token plain d_show; then
      tg plain token show "$d_show_id" --reveal >"$tmp/logs/docker-show.txt" 2>&1
      snippets "$tmp/logs/docker-show.txt" 'docker login' >"$d-login.sh"
      check "token show --reveal prints a docker login step" grep -q 'docker login' "$d-login.sh"
      ok "docker login: the text token show --reveal printed, run as is" run_printed "$d/show" "$d-login.sh"
      check "docker login stored the credentials in \$DOCKER_CONFIG/config.json" grep -qF "\"$plain_host\"" "$d/show/config.json"
      ok "docker pull of the demo image (through dockerd)" docker_pull "$d/show" "$plain_image"
      ok "docker run of the demo image" docker run --rm --network none "$plain_image" &&
        check "the demo image printed the greeting" grep -q 'Hello from tollgate' "$out"
      refused "docker pull of the non-entitled image is refused" "$denied_re" docker_pull "$d/show" "$plain_denied"
      revoke plain "$d_show_id"
      refused "docker pull with the stored login after the revocation is refused" "$denied_re" docker_pull "$d/show" "$plain_image"
    fi
    refused "docker login with a wrong token fails" "$denied_re" docker_login "$d/wrong" "$plain_host" "$wrong_token"
    check "a failed docker login stores nothing" no_creds_stored "$d/wrong" "$plain_host"
    refused "docker login with a revoked token fails" "$denied_re" docker_login "$d/revoked" "$plain_host" "$p_revoked"
    refused "docker login with an expired token fails" "$denied_re" docker_login "$d/expired" "$plain_host" "$p_expired"
    mkdir -p "$d/wrongcfg" && dockerconfigjson "$d/wrongcfg/config.json" "$plain_host" "$wrong_token"
    refused "docker pull with a wrong token in config.json is refused" "$denied_re" docker_pull "$d/wrongcfg" "$plain_image"
    refused "docker pull without credentials is refused" "$denied_re" docker_pull "$d/none" "$plain_image"
    mkdir -p "$d/secret" && cp "$tmp/plain.dockerconfigjson" "$d/secret/config.json"
    ok "docker pull with a kubectl .dockerconfigjson as config.json" docker_pull "$d/secret" "$plain_image"
    ok "docker manifest inspect of the demo image (multi-arch index)" docker_inspect "$d/secret" "$plain_image" &&
      check "docker manifest inspect shows amd64 and arm64" grep -q '"arm64"' "$out"
    refused "docker manifest inspect of the non-entitled image is refused" "$denied_re" docker_inspect "$d/secret" "$plain_denied"
  fi
fi

# ---------------------------------------------------------------- podman

# podman_env DIR: podman's configuration in DIR (vfs store, throwaway
# root, no search registries, every image accepted), exported.
podman_env() {
  mkdir -p "$1"
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$1/policy.json"
  printf 'unqualified-search-registries = []\n' >"$1/registries.conf"
  printf '[storage]\ndriver = "vfs"\nrunroot = "%s"\ngraphroot = "%s"\n' "$1/run" "$1/root" >"$1/storage.conf"
  # Containers get this shell's limits (as `--ulimit host`): podman gives
  # root's containers 1048576 open files and processes, which runc cannot
  # set where the hard limits are lower (sandboxes).
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n' \
    "$(ulimit -Hn)" "$(ulimit -Hn)" "$(ulimit -Hu)" "$(ulimit -Hu)" >"$1/containers.conf"
  export CONTAINERS_REGISTRIES_CONF=$1/registries.conf CONTAINERS_STORAGE_CONF=$1/storage.conf CONTAINERS_CONF=$1/containers.conf
}

if want podman; then
  section "podman (vfs storage, throwaway root; plain http, then TLS with the CA)"
  if ! have podman; then
    missing "podman: not installed (apt-get install podman)"
  elif [ $plain_ok = 0 ]; then
    fail "podman: no tollgate instance"
  else
    pd=$tmp/podman
    podman_env "$pd"
    P=(podman --root "$pd/root" --runroot "$pd/run" --tmpdir "$pd/tmp" --storage-driver vfs
      --cgroup-manager cgroupfs --events-backend file)
    echo "   $(podman --version 2>/dev/null)"
    podman_login() { # podman_login AUTHFILE HOST TOKEN [flags]
      printf '%s' "$3" | "${P[@]}" login --tls-verify=false --authfile "$1" -u tollgate --password-stdin "${@:4}" "$2"
    }
    podman_pull() { # podman_pull REF [flags]
      "${P[@]}" pull --tls-verify=false --signature-policy "$pd/policy.json" "${@:2}" "$1"
    }
    arch_is() { # arch_is REF ARCH
      [ "$("${P[@]}" image inspect --format '{{.Architecture}}' "$1")" = "$2" ]
    }
    ok "podman login with the demo token" podman_login "$pd/auth.json" "$plain_host" "$plain_token"
    ok "podman pull of the demo image with the stored login" podman_pull "$plain_image" --authfile "$pd/auth.json" &&
      check "podman has the image in its store (linux/amd64)" arch_is "$plain_image" amd64
    ok "podman pull --arch arm64 (the index's other manifest)" podman_pull "$plain_image" --authfile "$pd/auth.json" --arch arm64 &&
      check "the pulled image is linux/arm64" arch_is "$plain_image" arm64
    ok "podman pull --creds" podman_pull "$plain_image" --creds "tollgate:$plain_token"
    # The demo image runs: its /hello (a static program per platform) greets.
    demo_run() { "${P[@]}" run --rm --pull=never --network none --ulimit host "$plain_image"; }
    # demo_cp: the image's /hello copied out and run here, for machines
    # (sandboxes) where the OCI runtime may not start containers.
    demo_cp() {
      local c
      c=$("${P[@]}" create --pull=never "$plain_image") || return 1
      "${P[@]}" cp "$c:/hello" "$pd/hello" && "${P[@]}" rm "$c" >/dev/null && "$pd/hello"
    }
    if demo_run >"$tmp/logs/demo-run.log" 2>&1 || ! grep -q 'OCI permission denied' "$tmp/logs/demo-run.log"; then
      ok "podman run of the demo image" demo_run &&
        check "the demo image printed the greeting" grep -q 'Hello from tollgate' "$out"
    else
      echo "   podman cannot start containers here ($(tail -n 1 "$tmp/logs/demo-run.log")): running the image's /hello directly"
      ok "the demo image's /hello (linux/amd64) runs" demo_cp &&
        check "the demo image's /hello printed the greeting" grep -q 'Hello from tollgate' "$out"
    fi
    ok "podman pull --authfile kubectl .dockerconfigjson" podman_pull "$plain_image" --authfile "$tmp/plain.dockerconfigjson"
    refused "podman pull of the non-entitled image is refused" "$denied_re" podman_pull "$plain_denied" --authfile "$pd/auth.json"
    refused "podman pull with a wrong token is refused" "$denied_re" podman_pull "$plain_image" --creds "tollgate:$wrong_token"
    refused "podman pull without credentials is refused" "$denied_re" podman_pull "$plain_image" --authfile "$DOCKER_CONFIG/config.json"
    refused "podman login with a wrong token fails" "$denied_re" podman_login "$pd/wrong.json" "$plain_host" "$wrong_token"
    refused "podman pull with a revoked token is refused" "$denied_re" podman_pull "$plain_image" --creds "tollgate:$p_revoked"
    refused "podman pull with an expired token is refused" "$denied_re" podman_pull "$plain_image" --creds "tollgate:$p_expired"
    if new_token plain pm_later; then
      ok "podman login with a token revoked later" podman_login "$pd/later.json" "$plain_host" "$pm_later"
      revoke plain "$pm_later_id"
      refused "podman pull with the stored login after the revocation is refused" "$denied_re" podman_pull "$plain_image" --authfile "$pd/later.json"
    fi
    # Rotation (#13): the old secret keeps pulling through its grace and
    # stops at its end (here: a second rotation with --grace now), while
    # the newest pulls; the Warning header is on the wire for the old
    # secret and for a token expiring soon, and absent otherwise.
    if new_token plain pm_rot; then
      pm_rot_new=$(tg plain token rotate "$pm_rot_id" --grace 1h -o json 2>"$tmp/logs/token.err" | sed -nE 's/^ *"secret": *"([^"]+)".*/\1/p')
      [ -n "$pm_rot_new" ] || fail "tollgate token rotate --grace 1h" "$tmp/logs/token.err"
      secrets+=("$pm_rot_new")
      warning_of() { # warning_of SECRET: the Warning header of /token with it
        curl -sS -o /dev/null -D - -u "tollgate:$1" "$plain_url/token?service=$plain_host&scope=repository:demo/hello:pull" |
          tr -d '\r' | grep -i '^warning: 299 - "registry token '
      }
      ok "podman pull with the old secret during the rotation's grace" podman_pull "$plain_image" --creds "tollgate:$pm_rot"
      ok "podman pull with the new secret" podman_pull "$plain_image" --creds "tollgate:$pm_rot_new"
      ok "Warning: 299 on the wire for the rotated-out secret" warning_of "$pm_rot" &&
        check "the warning says it was rotated" grep -q 'was rotated' "$out"
      no_warning_of() { ! warning_of "$1"; }
      ok "no Warning for the new secret of a token without expiry" no_warning_of "$pm_rot_new"
      if create_token plain pm_exp demo --expires "$(date -u -d '+3 days' +%Y-%m-%d)"; then
        ok "Warning: 299 on the wire for a token expiring in 3 days" warning_of "$pm_exp" &&
          check "the warning names the expiry" grep -q 'expires on ' "$out"
      fi
      pm_rot_last=$(tg plain token rotate "$pm_rot_id" --grace now -o json 2>"$tmp/logs/token.err" | sed -nE 's/^ *"secret": *"([^"]+)".*/\1/p')
      [ -n "$pm_rot_last" ] || fail "tollgate token rotate --grace now" "$tmp/logs/token.err"
      secrets+=("$pm_rot_last")
      refused "podman pull with the old secret after its grace is refused" "$denied_re" podman_pull "$plain_image" --creds "tollgate:$pm_rot"
      refused "podman pull with the secret rotated out with --grace now is refused" "$denied_re" podman_pull "$plain_image" --creds "tollgate:$pm_rot_new"
      ok "podman pull with the newest secret" podman_pull "$plain_image" --creds "tollgate:$pm_rot_last"
    fi
    if [ $tls_ok = 1 ]; then
      mkdir -p "$pd/certs.d/$tls_host" && cp "$tmp/tls/ca.crt" "$pd/certs.d/$tls_host/ca.crt"
      ok "podman pull over TLS, verified with the CA (--cert-dir)" \
        "${P[@]}" pull --tls-verify=true --cert-dir "$pd/certs.d/$tls_host" --signature-policy "$pd/policy.json" \
        --authfile "$tmp/tls.dockerconfigjson" "$tls_image"
    fi
    unset CONTAINERS_REGISTRIES_CONF CONTAINERS_STORAGE_CONF CONTAINERS_CONF
  fi
fi

# ---------------------------------------------------------------- skopeo

if want skopeo; then
  section "skopeo (plain http, then TLS with the CA)"
  if ! have skopeo; then
    missing "skopeo: not installed (apt-get install skopeo)"
  elif [ $plain_ok = 0 ]; then
    fail "skopeo: no tollgate instance"
  else
    sk=$tmp/skopeo
    mkdir -p "$sk"
    echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$sk/policy.json"
    printf 'unqualified-search-registries = []\n' >"$sk/registries.conf"
    export CONTAINERS_REGISTRIES_CONF=$sk/registries.conf
    echo "   $(skopeo --version 2>/dev/null)"
    S=(skopeo --policy "$sk/policy.json")
    sk_inspect() { "${S[@]}" inspect --tls-verify=false "$@"; }
    sk_copy() { # sk_copy SRC DIR [flags]
      "${S[@]}" copy --src-tls-verify=false "${@:3}" "docker://$1" "dir:$2"
    }
    # Every blob in a dir: copy has the bytes its digest names.
    blobs_intact() {
      local f n=0
      for f in "$1"/*; do
        case ${f##*/} in manifest.json | version) continue ;; esac
        [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "${f##*/}" ] || return 1
        n=$((n + 1))
      done
      [ $n -ge 3 ] # a config and at least two layers
    }
    ok "skopeo inspect --creds" sk_inspect --creds "tollgate:$plain_token" "docker://$plain_image" &&
      check "skopeo inspect names the repository" grep -q "\"Name\": \"$plain_host/demo/" "$out" &&
      cp "$out" "$sk/creds.json"
    ok "skopeo copy --creds to a directory" sk_copy "$plain_image" "$sk/creds" --src-creds "tollgate:$plain_token" &&
      check "every copied blob matches its digest" blobs_intact "$sk/creds"
    ok "skopeo inspect --authfile kubectl .dockerconfigjson" sk_inspect --authfile "$tmp/plain.dockerconfigjson" "docker://$plain_image"
    ok "skopeo copy --authfile kubectl .dockerconfigjson" sk_copy "$plain_image" "$sk/secret" --src-authfile "$tmp/plain.dockerconfigjson" &&
      check "every copied blob matches its digest" blobs_intact "$sk/secret"
    ok "skopeo inspect --authfile .dockerconfigjson keyed https://HOST" sk_inspect --authfile "$tmp/plain-url.dockerconfigjson" "docker://$plain_image"
    ok "skopeo copy --override-arch arm64 (the index's other manifest)" sk_copy "$plain_image" "$sk/arm64" --src-creds "tollgate:$plain_token" --override-arch arm64 &&
      check "the arm64 copy differs from the amd64 one" bash -c '! cmp -s "$1/manifest.json" "$2/manifest.json"' _ "$sk/arm64" "$sk/creds"
    ok "skopeo inspect with another username (any non-empty one)" sk_inspect --creds "ci-bot:$plain_token" "docker://$plain_image"
    digest=$(sed -nE 's/^ *"Digest": *"(sha256:[0-9a-f]{64})".*/\1/p' "$sk/creds.json" 2>/dev/null)
    if [ -n "$digest" ]; then
      ok "skopeo copy by digest" sk_copy "${plain_image%:*}@$digest" "$sk/bydigest" --src-creds "tollgate:$plain_token"
    else
      fail "skopeo inspect gave no digest" "$sk/creds.json"
    fi
    refused "skopeo inspect with a wrong token is refused" "$denied_re" sk_inspect --creds "tollgate:$wrong_token" "docker://$plain_image"
    refused "skopeo inspect without credentials is refused" "$denied_re" sk_inspect --no-creds "docker://$plain_image"
    refused "skopeo copy with a wrong token is refused" "$denied_re" sk_copy "$plain_image" "$sk/wrong" --src-creds "tollgate:$wrong_token"
    refused "skopeo inspect of the non-entitled image is refused" "$denied_re" sk_inspect --authfile "$tmp/plain.dockerconfigjson" "docker://$plain_denied"
    refused "skopeo copy of the non-entitled image is refused" "$denied_re" sk_copy "$plain_denied" "$sk/denied" --src-authfile "$tmp/plain.dockerconfigjson"
    refused "skopeo inspect with a revoked token is refused" "$denied_re" sk_inspect --creds "tollgate:$p_revoked" "docker://$plain_image"
    refused "skopeo inspect with an expired token is refused" "$denied_re" sk_inspect --creds "tollgate:$p_expired" "docker://$plain_image"
    # A repository that is not entitled must look exactly like one that does not exist.
    denied_repo=${plain_denied#*/}
    denied_repo=${denied_repo%:*}
    nonexistent_repo=${denied_repo%/*}/e2e-does-not-exist
    sk_inspect --authfile "$tmp/plain.dockerconfigjson" "docker://$plain_denied" >"$sk/denied.err" 2>&1
    sk_inspect --authfile "$tmp/plain.dockerconfigjson" "docker://$plain_host/$nonexistent_repo:latest" >"$sk/nonexistent.err" 2>&1
    normalized() { sed -E 's/^time="[^"]*" //' "$1" | sed "s#$2#REPO#g"; }
    same_error() {
      [ -s "$sk/denied.err" ] &&
        diff <(normalized "$sk/denied.err" "$denied_repo") <(normalized "$sk/nonexistent.err" "$nonexistent_repo")
    }
    check "a non-entitled repository and a non-existent one get the same answer" same_error
    if [ $tls_ok = 1 ]; then
      mkdir -p "$sk/certs.d" && cp "$tmp/tls/ca.crt" "$sk/certs.d/ca.crt"
      ok "skopeo inspect over TLS, verified with the CA (--cert-dir)" \
        "${S[@]}" inspect --tls-verify=true --cert-dir "$sk/certs.d" --authfile "$tmp/tls.dockerconfigjson" "docker://$tls_image"
      refused "skopeo over TLS without the CA fails verification (the check above is real)" 'x509|certificate' \
        "${S[@]}" inspect --tls-verify=true --authfile "$tmp/tls.dockerconfigjson" "docker://$tls_image"
    fi
    unset CONTAINERS_REGISTRIES_CONF
  fi
fi

# ---------------------------------------------------------------- crane

if want crane; then
  section "crane $CRANE_VERSION (TLS with the CA; plain http with --insecure)"
  if [ -z "$crane" ]; then
    missing "crane: go install github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION failed ($(tail -n 1 "$tmp/logs/crane-build.log" 2>/dev/null | mask))"
  elif [ $tls_ok = 0 ]; then
    missing "crane: no TLS instance (openssl)"
  else
    cr=$tmp/crane
    mkdir -p "$cr"
    # cr_ CONFIGDIR ARGS...: crane with its own docker config and our CA bundle.
    cr_() { DOCKER_CONFIG=$1 SSL_CERT_FILE=$tmp/tls/bundle.pem "$crane" "${@:2}"; }
    crane_login() { cr_ "$1" auth login "$2" -u tollgate --password-stdin <<<"$3"; }
    manifest_digest_matches() {
      [ "$(cr_ "$cr/good" digest "$tls_image")" = "sha256:$(cr_ "$cr/good" manifest "$tls_image" | sha256sum | cut -d' ' -f1)" ]
    }
    ok "crane auth login (writes the config only)" crane_login "$cr/good" "$tls_host" "$tls_token"
    ok "crane manifest of the demo image" cr_ "$cr/good" manifest "$tls_image" &&
      check "it is an OCI index" grep -q 'application/vnd.oci.image.index.v1+json' "$out"
    ok "crane digest of the demo image" cr_ "$cr/good" digest "$tls_image" &&
      check "crane digest = sha256 of the manifest bytes" manifest_digest_matches
    ok "crane pull (linux/amd64) to a tarball" cr_ "$cr/good" pull "$tls_image" "$cr/amd64.tar" &&
      check "the tarball holds a manifest" bash -c 'tar -tf "$1" | grep -q manifest.json' _ "$cr/amd64.tar"
    ok "crane pull --platform linux/arm64" cr_ "$cr/good" pull --platform linux/arm64 "$tls_image" "$cr/arm64.tar"
    ok "crane catalog" cr_ "$cr/good" catalog "$tls_host" &&
      check "the catalog lists the demo repository and not the non-entitled one" \
        bash -c 'grep -qx "$2" "$1" && ! grep -qx "$3" "$1"' _ "$out" "$(r=${tls_image#*/}; echo "${r%:*}")" "$(r=${tls_denied#*/}; echo "${r%:*}")"
    refused "crane manifest of the non-entitled image is refused" "$denied_re" cr_ "$cr/good" manifest "$tls_denied"
    refused "crane pull of the non-entitled image is refused" "$denied_re" cr_ "$cr/good" pull "$tls_denied" "$cr/denied.tar"
    refused "crane manifest without credentials is refused" "$denied_re" cr_ "$cr/none" manifest "$tls_image"
    crane_login "$cr/wrong" "$tls_host" "$wrong_token" >/dev/null 2>&1
    refused "crane manifest with a wrong token is refused" "$denied_re" cr_ "$cr/wrong" manifest "$tls_image"
    crane_login "$cr/revoked" "$tls_host" "$t_revoked" >/dev/null 2>&1
    refused "crane manifest with a revoked token is refused" "$denied_re" cr_ "$cr/revoked" manifest "$tls_image"
    if new_token tls cr_later; then
      crane_login "$cr/later" "$tls_host" "$cr_later" >/dev/null 2>&1
      ok "crane pull with a token revoked later" cr_ "$cr/later" pull "$tls_image" "$cr/later.tar"
      revoke tls "$cr_later_id"
      refused "crane pull after the revocation is refused" "$denied_re" cr_ "$cr/later" pull "$tls_image" "$cr/later2.tar"
    fi
    if [ $plain_ok = 1 ]; then
      crane_login "$cr/plain" "$plain_host" "$plain_token" >/dev/null 2>&1
      ok "crane --insecure manifest over plain http" cr_ "$cr/plain" manifest --insecure "$plain_image"
    fi
  fi
fi

# ---------------------------------------------------------------- containerd

if want containerd; then
  section "containerd (ctr, throwaway root and socket; TLS with the CA in hosts.toml)"
  if ! have containerd || ! have ctr; then
    missing "containerd: containerd/ctr not installed (apt-get install containerd)"
  elif [ "$(id -u)" != 0 ]; then
    missing "containerd: needs root (it mounts snapshots)"
  elif [ $tls_ok = 0 ]; then
    missing "containerd: no TLS instance (openssl)"
  else
    cd_=$tmp/ctd
    mkdir -p "$cd_/root" "$cd_/state"
    sock=$cd_/ctd.sock
    cat >"$cd_/config.toml" <<EOF
version = 2
root = "$cd_/root"
state = "$cd_/state"
# Nothing here needs CRI, extra snapshotters, /opt or tracing.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
    hosts_toml "$cd_/hosts" "$tls_host"
    echo "   $(containerd --version 2>/dev/null)"
    containerd --config "$cd_/config.toml" --root "$cd_/root" --state "$cd_/state" --address "$sock" \
      >"$tmp/logs/containerd.log" 2>&1 &
    pids+=($!)
    C=(ctr --address "$sock" --namespace e2e)
    for i in $(seq 1 100); do
      "${C[@]}" version >/dev/null 2>&1 && break
      kill -0 "${pids[-1]}" 2>/dev/null || break
      sleep 0.1
    done
    if ! "${C[@]}" version >"$tmp/logs/ctr-version.log" 2>&1; then
      fail "containerd did not start on $sock" "$tmp/logs/containerd.log"
    else
      ctr_pull() { # ctr_pull USER:PASS REF [flags]
        "${C[@]}" images pull --hosts-dir "$cd_/hosts" --user "$1" "${@:3}" "$2"
      }
      ok "ctr images pull --user with the demo token (TLS, hosts.toml ca)" ctr_pull "tollgate:$tls_token" "$tls_image" --http-dump &&
        check "containerd POSTed /token (OAuth2 password grant) and did not fall back to GET" \
          bash -c 'grep -q "POST /token" "$1" && ! grep -q "GET /token" "$1"' _ "$out"
      check "ctr images ls lists the image" bash -c '"${@:2}" images ls -q | grep -qxF "$1"' _ "$tls_image" "${C[@]}"
      ok "ctr images pull --platform linux/arm64" ctr_pull "tollgate:$tls_token" "$tls_image" --platform linux/arm64
      # kubelet hands containerd the username/password decoded from the pull secret.
      secret_user=$(secret_creds "$tmp/tls.dockerconfigjson")
      secrets+=("$secret_user")
      ok "ctr images pull with the credentials of the kubectl .dockerconfigjson" ctr_pull "$secret_user" "$tls_image"
      refused "ctr images pull with a wrong token is refused" "$denied_re" ctr_pull "tollgate:$wrong_token" "$tls_image"
      refused "ctr images pull without credentials is refused" "$denied_re" \
        "${C[@]}" images pull --hosts-dir "$cd_/hosts" "$tls_image"
      refused "ctr images pull of the non-entitled image is refused" "$denied_re" ctr_pull "tollgate:$tls_token" "$tls_denied"
      refused "ctr images pull with a revoked token is refused" "$denied_re" ctr_pull "tollgate:$t_revoked" "$tls_image"
      if new_token tls ctd_later; then
        ok "ctr images pull with a token revoked later" ctr_pull "tollgate:$ctd_later" "$tls_image"
        revoke tls "$ctd_later_id"
        refused "ctr images pull after the revocation is refused (content already local)" "$denied_re" ctr_pull "tollgate:$ctd_later" "$tls_image"
      fi
    fi
  fi
fi

# ---------------------------------------------------------------- cri

# kubelet's path: kubelet decodes the pull secret and hands containerd's
# CRI plugin the user name and password in PullImage; crictl makes the
# same call. A private containerd with its CRI plugin: its own root,
# state, socket and config under $tmp, in a mount namespace of its own
# where /etc/containerd is an empty tmpfs; registry hosts from config_path
# /etc/containerd/certs.d, as on a node, where the hosts.toml step the TLS
# instance's `tollgate dev` printout gives is run as printed.
cri_sock="" cri_pid=""
# start_cri: starts that containerd and runs the printed hosts.toml step;
# sets cri_sock.
start_cri() {
  local c=$tmp/cri i
  mkdir -p "$c/root" "$c/state"
  cat >"$c/config.toml" <<TOML
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$c/cri.sock"
[ttrpc]
  address = "$c/cri.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  # Pulling needs no pod network.
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$c/cni/bin"
    conf_dir = "$c/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
TOML
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' "$c/cri.sock" "$c/cri.sock" >"$c/crictl.yaml"
  unshare --mount --propagation private bash -c 'mount -t tmpfs -o mode=755 tmpfs /etc/containerd && exec "$@"' _ \
    containerd --config "$c/config.toml" >"$tmp/logs/cri-containerd.log" 2>&1 &
  cri_pid=$!
  pids+=($cri_pid)
  for i in $(seq 1 100); do
    crictl --config "$c/crictl.yaml" info >/dev/null 2>&1 && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  if ! crictl --config "$c/crictl.yaml" info >"$tmp/logs/crictl-info.log" 2>&1; then
    fail "containerd with the CRI plugin did not start on $c/cri.sock" "$tmp/logs/cri-containerd.log"
    return 1
  fi
  snippets "$tmp/logs/tls.out" "containerd [(]kubelet[)]: trust tollgate's CA with hosts.toml" >"$c/hosts.sh"
  run_hosts() { nsenter --mount --target "$cri_pid" --wd="$c" bash -euo pipefail "$c/hosts.sh"; }
  check "the TLS printout has a containerd hosts.toml step" grep -q hosts.toml "$c/hosts.sh"
  ok "the printed containerd hosts.toml step, as printed (in containerd's own /etc/containerd)" run_hosts || return 1
  cri_sock=$c/cri.sock
}
# cri_pull USER PASS IMAGE: CRI PullImage with these credentials, as
# kubelet sends those of an imagePullSecret.
cri_pull() {
  crictl --config "$tmp/cri/crictl.yaml" --runtime-endpoint "unix://$cri_sock" --image-endpoint "unix://$cri_sock" \
    pull --creds "$1:$2" "$3"
}
# cri_has IMAGE: the CRI image service lists IMAGE.
cri_has() {
  crictl --config "$tmp/cri/crictl.yaml" images -o json | grep -qF "\"$1\""
}

if want cri; then
  section "kubelet's CRI path (crictl pull against a private containerd with its CRI plugin; TLS with the CA in hosts.toml)"
  if ! have crictl; then
    missing "cri: crictl is not installed (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0)"
  elif ! have containerd; then
    missing "cri: containerd is not installed (apt-get install containerd)"
  elif [ "$(id -u)" != 0 ] || ! have nsenter; then
    missing "cri: containerd needs root (and nsenter)"
  elif [ $tls_ok = 0 ]; then
    missing "cri: no TLS instance (openssl)"
  elif start_cri; then
    echo "   crictl $(go version -m "$(command -v crictl)" 2>/dev/null | awk '$1 == "mod" {print $3}'), containerd $(containerd --version 2>/dev/null | cut -d' ' -f3)"
    # The pull secret the printed `kubectl create secret docker-registry`
    # line makes (token show --reveal of a fresh token, the kubectl
    # stand-in), and the user name and password kubelet takes from it.
    if new_token tls cri_tok; then
      tg tls token show "$cri_tok_id" --reveal >"$tmp/cri/show.txt" 2>&1
      snippets "$tmp/cri/show.txt" 'Kubernetes pull secret' >"$tmp/cri/kube.sh"
      write_kubectl "$tmp/cri/kube"
      ok "the printed kubectl create secret line, as printed (kubectl stand-in)" \
        env PATH="$tmp/cri/kube:$PATH" KUBE_DIR="$tmp/cri/kube" bash -euo pipefail "$tmp/cri/kube.sh"
      secret_auth=$(secret_creds "$tmp/cri/kube/tollgate-pull.dockerconfigjson")
      secrets+=("$secret_auth")
      ok "crictl pull --creds with the pull secret's credentials" cri_pull "${secret_auth%%:*}" "${secret_auth#*:}" "$tls_image" &&
        check "the CRI image service lists the pulled image" cri_has "$tls_image"
    fi
    refused "crictl pull with a wrong token is refused" "$denied_re" cri_pull tollgate "$wrong_token" "$tls_image"
    refused "crictl pull with a revoked token is refused" "$denied_re" cri_pull tollgate "$t_revoked" "$tls_image"
    refused "crictl pull of the non-entitled image is refused" "$denied_re" cri_pull tollgate "$tls_token" "$tls_denied"
    refused "crictl pull without credentials is refused" "$denied_re" \
      crictl --config "$tmp/cri/crictl.yaml" pull "$tls_image"
    if new_token tls cri_later; then
      ok "crictl pull with a token revoked later" cri_pull tollgate "$cri_later" "$tls_image"
      revoke tls "$cri_later_id"
      refused "crictl pull after the revocation is refused (the image is already on the node)" "$denied_re" cri_pull tollgate "$cri_later" "$tls_image"
    fi
  fi
fi

# ---------------------------------------------------------------- dev

# printout_block NAME TITLE: the indented lines under the line starting
# with TITLE in instance NAME's `tollgate dev` printout, unindented.
printout_block() {
  awk -v t="$2" 'index($0, t) == 1 { on = 1; next } on && /^$/ { exit } on { sub(/^  /, ""); print }' "$tmp/logs/$1.out"
}

if want dev; then
  section "tollgate dev's printout (its pull, run and CLI lines, run as printed)"
  if ! have docker || ! have dockerd || ! have podman || ! have nsenter || [ -z "$crane" ]; then
    missing "dev: docker, dockerd, podman, nsenter and crane are needed to run the printout's lines"
  elif [ "$(id -u)" != 0 ]; then
    missing "dev: needs root (dockerd)"
  elif [ $plain_ok = 0 ]; then
    fail "dev: no tollgate instance"
  elif start_dockerd; then
    dv=$tmp/dev
    mkdir -p "$dv/bin"
    ln -sf "$tollgate" "$dv/bin/tollgate"
    ln -sf "$crane" "$dv/bin/crane"
    podman_env "$dv/podman"
    instances=(plain)
    [ $tls_ok = 1 ] && instances+=(tls)
    for name in "${instances[@]}"; do
      printout_block "$name" 'pull and run the demo image' >"$dv/$name.sh"
      if [ ! -S "$tmp/ctd/ctd.sock" ] && grep -q ' ctr ' "$dv/$name.sh"; then
        skip "dev ($name): the printed ctr line (no private containerd: the containerd section did not run)"
        sed -i '/ ctr /d' "$dv/$name.sh"
      fi
      check "dev ($name): the printout has docker, podman and crane lines" \
        bash -c 'grep -q "^docker run " "$1" && grep -q "^podman run " "$1" && grep -q "crane pull " "$1"' _ "$dv/$name.sh"
      if [ "$name" = tls ]; then
        check "dev (tls): no line turns TLS verification off" bash -c '! grep -Eq -- "--tls-verify=false|--insecure" "$1"' _ "$dv/$name.sh"
      fi
      mkdir -p "$dv/$name-cwd"
      # Each line as printed, in the private dockerd's mount namespace
      # (its own /etc/docker), with the private containerd for ctr.
      run_dev() { # run_dev NAME SCRIPT
        # (Entering a mount namespace moves to its /: --wd keeps ours.)
        PATH=$dv/bin:$PATH DOCKER_CONFIG=$dv/$1-docker \
          CONTAINERD_ADDRESS=$tmp/ctd/ctd.sock CONTAINERD_NAMESPACE=e2e-dev \
          nsenter --mount --target "$dockerd_pid" --wd="$dv/$1-cwd" bash -euo pipefail "$2"
      }
      while IFS= read -r line; do
        printf '%s\n' "$line" >"$dv/line.sh"
        desc="dev ($name), as printed: $(printf '%s' "$line" | mask)"
        # Sandboxes may not let runc set podman's rlimits (the podman
        # section copies /hello out instead); nowhere else is it skipped.
        if [[ $line == "podman run "* ]] && ! run_dev "$name" "$dv/line.sh" >"$dv/podman-run.log" 2>&1 &&
          grep -q 'OCI permission denied' "$dv/podman-run.log"; then
          skip "$desc (podman cannot start containers here: $(grep -o 'error setting rlimit[^:]*' "$dv/podman-run.log" | head -n 1))"
          continue
        fi
        ok "$desc" run_dev "$name" "$dv/line.sh" || continue
        case $line in
        "docker run "* | "podman run "*) check "dev ($name): ${line%% *} run printed the greeting" grep -q 'Hello from tollgate' "$out" ;;
        *"crane pull "*) check "dev ($name): crane pull wrote demo.tar" test -s "$dv/$name-cwd/demo.tar" ;;
        esac
      done <"$dv/$name.sh"
    done
    # The CLI lines (they load the instance's settings themselves).
    for name in "${instances[@]}"; do
      printout_block "$name" 'try the CLI:' >"$dv/$name-cli.sh"
      run_cli() { (cd "$dv/$1-cwd" && PATH=$dv/bin:$PATH bash -euo pipefail "$dv/$1-cli.sh"); }
      ok "dev ($name): the printed CLI lines, as printed" run_cli "$name" &&
        check "dev ($name): they list the demo account and create the token" bash -c 'grep -q demo "$1" && grep -q tg_ "$1"' _ "$out"
    done
    unset CONTAINERS_REGISTRIES_CONF CONTAINERS_STORAGE_CONF CONTAINERS_CONF
  fi
fi

# ---------------------------------------------------------------- credential provider

# b64url: standard input as unpadded base64url (JWS segments).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# sa_issuer DIR: a cluster's service-account signing key and its JWKS as
# `kubectl get --raw /openid/v1/jwks` prints it (a static key set: the
# cluster's issuer is not reachable from tollgate).
sa_issuer() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1/sa.key" || return 1
  local n
  n=$(printf '%b' "$(openssl rsa -in "$1/sa.key" -noout -modulus | sed -e 's/^Modulus=//' -e 's/../\\x&/g')" | b64url)
  printf '{"keys":[{"use":"sig","kty":"RSA","kid":"e2e-sa","alg":"RS256","n":"%s","e":"AQAB"}]}\n' "$n" >"$1/jwks.json"
}

# sa_token DIR NAMESPACE SERVICEACCOUNT AUDIENCE [AGE]: the token kubelet
# mints for a pod (KEP-4412), signed with DIR's key; AGE seconds old
# (a ten-minute token: 700 has expired).
sa_token() {
  local now h p
  now=$(($(date +%s) - ${5:-0}))
  h=$(printf '{"alg":"RS256","kid":"e2e-sa","typ":"JWT"}' | b64url)
  p=$(printf '{"aud":["%s"],"exp":%d,"iat":%d,"nbf":%d,"iss":"%s","jti":"e2e-%s","sub":"system:serviceaccount:%s:%s","kubernetes.io":{"namespace":"%s","serviceaccount":{"name":"%s","uid":"0b7d5f9e-52a5-4c1d-9a3b-8f5c1e0d2a11"},"pod":{"name":"web-0","uid":"5a1c2e3f-6b7d-4e8f-9a0b-1c2d3e4f5a6b"},"node":{"name":"node-1","uid":"9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"}}}' \
    "$4" $((now + 600)) "$now" "$now" "$sa_iss" "$RANDOM" "$2" "$3" "$2" "$3" | b64url)
  printf '%s.%s.%s' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$1/sa.key" -binary | b64url)"
}

# provide TOKEN: kubelet's request for the TLS demo image with TOKEN, through
# the provider as the shipped CredentialProviderConfig runs it; the
# CredentialProviderResponse lands in $cp/response.json.
provide() {
  printf '{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"%s","serviceAccountToken":"%s","serviceAccountAnnotations":{}}\n' "$tls_image" "$1" |
    "$cp/tollgate-credential-provider" --url "$tls_url" --registry "$tls_host" --cache-key-type Registry --ca-file "$tmp/tls/ca.crt" >"$cp/response.json"
}
# answer FIELD: a string field of the last response (username, password, cacheKeyType).
answer() { sed -nE 's/.*"'"$1"'":"([^"]*)".*/\1/p' "$cp/response.json"; }

if want credprov; then
  section "kubelet credential provider (a pod's service-account token exchanged at /oauth2/token; crictl pull --creds and crane with the answer)"
  cp=$tmp/credprov
  mkdir -p "$cp"
  sa_iss=https://kubernetes.default.svc.cluster.local
  if [ $tls_ok = 0 ]; then
    missing "credprov: no TLS instance (openssl)"
  elif ! go build -o "$cp/tollgate-credential-provider" ./cmd/tollgate-credential-provider >"$tmp/logs/credprov-build.log" 2>&1; then
    fail "go build ./cmd/tollgate-credential-provider" "$tmp/logs/credprov-build.log"
  elif ! sa_issuer "$cp" >"$tmp/logs/credprov-key.log" 2>&1; then
    fail "credprov: a service-account signing key (openssl)" "$tmp/logs/credprov-key.log"
  elif ok "tollgate trust create: the cluster's issuer with its static JWKS (docs/keyless.md), namespace shop's pullers" \
    tg tls trust create --account demo --name e2e-cluster --issuer "$sa_iss" --jwks-file "$cp/jwks.json" \
      --claim kubernetes.io/namespace=shop --claim 'kubernetes.io/serviceaccount/name~puller*'; then
    pod=$(sa_token "$cp" shop puller tollgate:demo)
    secrets+=("$pod")
    if ok "the provider answers kubelet's request with the pod's token" provide "$pod"; then
      cred_user=$(answer username) cred_pass=$(answer password)
      secrets+=("$cred_pass")
      check "the answer is a CredentialProviderResponse for $tls_host with an ephemeral (tge_) credential" \
        bash -c 'grep -q "\"kind\":\"CredentialProviderResponse\"" "$1" && grep -q "\"auth\":{\"$2\":{" "$1" && [[ $3 == tge_* ]]' _ "$cp/response.json" "$tls_host" "$cred_pass"
      check "kubelet may cache it for less than the pod token's ten minutes" \
        grep -Eq '"cacheDuration":"([1-9]m[0-9.]*s|[0-9.]+s)"' "$cp/response.json"
      # The CRI section's containerd, or one of our own when it did not run.
      if [ -n "${cri_sock:-}" ] || { have crictl && have containerd && [ "$(id -u)" = 0 ] && start_cri; }; then
        ok "crictl pull --creds with the provider's credential (kubelet's CRI PullImage)" cri_pull "$cred_user" "$cred_pass" "$tls_image"
      else
        missing "credprov: crictl and containerd (as root) are needed for the CRI pull"
      fi
      if [ -n "$crane" ]; then
        cp_crane() { DOCKER_CONFIG=$cp/crane SSL_CERT_FILE=$tmp/tls/bundle.pem "$crane" "$@"; }
        cp_crane auth login "$tls_host" -u "$cred_user" --password-stdin <<<"$cred_pass" >/dev/null 2>&1
        ok "crane pull with the provider's credential" cp_crane pull "$tls_image" "$cp/pulled.tar"
        refused "crane pull of the non-entitled image with it is refused" "$denied_re" cp_crane pull "$tls_denied" "$cp/denied.tar"
      else
        missing "credprov: crane was not built"
      fi
    fi
    other=$(sa_token "$cp" other puller tollgate:demo)
    expired=$(sa_token "$cp" shop puller tollgate:demo 700)
    secrets+=("$other" "$expired")
    refused "another namespace's service account gets nothing" 'tollgate refused the token exchange \(400 invalid_grant\)' provide "$other" &&
      check "what kubelet logs is one line" test "$(wc -l <"$out")" = 1
    refused "an expired pod token gets nothing" 'tollgate refused the token exchange \(400 invalid_grant\)' provide "$expired"
    refused "a request without a service-account token is refused with the config to fix" 'no serviceAccountToken: give the provider tokenAttributes' provide ""
  fi
  section_end
fi

# ---------------------------------------------------------------- apt

# in_root SCRIPT: runs SCRIPT (what was printed, then the checks) with
# /etc/apt, /var/lib/apt and /var/cache/apt private and empty but for
# the directories a fresh Debian ships, and the CA certificates private
# (/usr/local/share/ca-certificates, and /etc/ssl/certs as a copy).
in_root() {
  unshare --mount --propagation private bash -euo pipefail -c '
    certs=$(mktemp -d) && cp -a /etc/ssl/certs/. "$certs"
    for d in /etc/apt /var/lib/apt /var/cache/apt /usr/local/share/ca-certificates /etc/ssl/certs; do
      mount -t tmpfs -o mode=755 tmpfs "$d"
    done
    cp -a "$certs/." /etc/ssl/certs && rm -rf "$certs"
    mkdir -p /etc/apt/apt.conf.d /etc/apt/auth.conf.d /etc/apt/preferences.d /etc/apt/sources.list.d \
      /etc/apt/trusted.gpg.d /etc/apt/keyrings /var/lib/apt/lists/partial /var/cache/apt/archives/partial
    bash -euo pipefail "$1"
    ' _ "$1"
}
# apt_script PRINTOUT FORM OUT: OUT runs the apt steps of PRINTOUT (what
# `token show --reveal` or the console printed) as they are, in the
# deb822 FORM or the one-line one, then checks what they left behind and
# runs apt-get update --error-on=any and install --download-only.
apt_script() {
  # (The CA step is printed only with a private CA.)
  local re="packages: trust tollgate's CA [(][^)]*[)]|apt archive key os|apt credentials os|apt source os"
  [ "$2" = oneline ] && re="packages: trust tollgate's CA [(][^)]*[)]|apt archive key os|apt credentials os|apt source os [(]one-line[^)]*[)]"
  {
    snippets "$1" "$re"
    echo 'f=$(ls /etc/apt/auth.conf.d/tollgate-os.conf) && [ "$(stat -c %a "$f")" = 600 ]'
    echo 'apt-get update --error-on=any'
    echo 'apt-get install --download-only -y '"$(sed -n 's/^TOLLGATE_APT_PACKAGE=//p' "$tmp/plain/dev.env")"
    echo 'ls /var/cache/apt/archives/*.deb'
  } >"$3"
}

if want apt; then
  section "apt (the exact text \`token show --reveal\` and the TLS dev printout print, in a private /etc/apt, /var/lib/apt and CA store)"
  if ! have apt-get || ! have unshare; then
    missing "apt: apt-get or unshare is not installed"
  elif [ "$(id -u)" != 0 ]; then
    missing "apt: needs root (unshare --mount with tmpfs over /etc/apt, /var/lib/apt, /var/cache/apt)"
  elif [ $plain_ok = 0 ]; then
    fail "apt: no tollgate instance"
  else
    ap=$tmp/apt
    mkdir -p "$ap"
    create_token plain apt_secret demo --scope images,packages
    apt_id=${apt_secret_id:-}
    ok "tollgate token show --reveal (images,packages token)" tg plain token show "$apt_id" --reveal &&
      cp "$out" "$ap/show.txt"
    # The deb822 form, and separately the one-line form instead of it.
    apt_script "$ap/show.txt" deb822 "$ap/deb822-run.sh"
    apt_script "$ap/show.txt" oneline "$ap/oneline-run.sh"
    check "token show prints the apt key, credentials and .sources steps" \
      bash -c 'grep -q "/keys/apt/os/" "$1" && grep -q "install -m 600 /dev/null /etc/apt/auth.conf.d/" "$1" && grep -q "Signed-By: " "$1"' _ "$ap/deb822-run.sh"
    for form in deb822 oneline; do
      ok "apt ($form): the printed commands, then apt-get update --error-on=any and install --download-only" in_root "$ap/$form-run.sh" &&
        check "apt ($form) downloaded the package" grep -q '\.deb$' "$out"
    done
    # Over TLS with a private CA: the TLS `tollgate dev` printout's steps
    # (the CA step first), as printed.
    if [ $tls_ok = 1 ]; then
      apt_script "$tmp/logs/tls.out" deb822 "$ap/tls-run.sh"
      check "the TLS printout has the CA step" grep -q update-ca-certificates "$ap/tls-run.sh"
      ok "apt over https with a private CA: the TLS dev printout's CA, key, credentials and .sources steps, as printed" \
        in_root "$ap/tls-run.sh" &&
        check "apt (https) downloaded the package" grep -q '\.deb$' "$out"
      grep -v update-ca-certificates "$ap/tls-run.sh" >"$ap/tls-noca-run.sh"
      refused "apt over https without the printed CA step fails (the certificate is checked)" \
        'certificate|not trusted|issuer' in_root "$ap/tls-noca-run.sh"
    fi
    # Without the archive key step apt refuses the repository: the key step is needed.
    grep -v '/keys/apt/os/' "$ap/deb822-run.sh" >"$ap/nokey-run.sh"
    refused "apt-get update without the printed key step fails (signatures are checked)" 'NO_PUBKEY|is not signed' in_root "$ap/nokey-run.sh"
    # The same steps with a revoked token must fail at apt-get update.
    revoke plain "$apt_id"
    refused "apt-get update with the printed credentials of a revoked token fails" '401 +Unauthorized' in_root "$ap/deb822-run.sh"
  fi
fi

# ---------------------------------------------------------------- apk

# apk-tools itself cannot be installed here: Debian packages no
# apk-tools (not in bookworm, bookworm-backports, trixie or sid),
# Alpine's mirrors are out of reach, and the Go module proxy refuses
# chainguard.dev/apko. So, without an `apk` binary, the section runs the
# printed text as is but for its apk lines (the key download with wget,
# the /etc/apk/repositories line, the HTTP_AUTH export), and then does
# what `apk update` and `apk add` do over HTTP with apk-fetch below:
# the index and the package fetched the way apk-tools' libfetch asks for
# them, the index signature verified with the key the printed step
# installed, as apk verifies it. Where apk-tools is installed (an Alpine
# machine, apk-tools-static), the printed text runs whole, apk included.

# apk_root SCRIPT: runs SCRIPT as root in a mount namespace of its own in
# which /etc, /usr, /var and /lib (unless it is a link into /usr) are
# overlays whose changes stay in memory: what the printed steps write
# (/etc/apk/keys, /etc/apk/repositories, the CA) and what apk installs
# (/lib/apk/db, /usr/share/..., /var/cache/apk) is seen by SCRIPT alone
# and gone after. It starts as a fresh Alpine machine has it:
# /etc/apk/keys, an empty /etc/apk/repositories and, with apk-tools, a
# package database.
apk_root() {
  local r=$tmp/apk/root-$ncheck
  mkdir -p "$r"
  unshare --mount --propagation private bash -euo pipefail -c '
    mount -t tmpfs -o mode=700 tmpfs "$2"
    for d in /etc /usr /var /lib; do
      [ -L "$d" ] && continue # merged /usr: /lib is /usr/lib
      mkdir -p "$2$d/upper" "$2$d/work"
      mount -t overlay overlay -o "lowerdir=$d,upperdir=$2$d/upper,workdir=$2$d/work" "$d"
    done
    mkdir -p /etc/apk/keys
    : >/etc/apk/repositories
    if command -v apk >/dev/null; then apk add --initdb --quiet; fi
    bash -euo pipefail "$1"
  ' _ "$1" "$r"
}

# apk-fetch URL OUT: GETs URL as apk-tools' libfetch does (libfetch/http.c,
# http_request and http_authorize): credentials in the URL are sent at
# once; otherwise none, and after a 401 once more with Basic from
# $HTTP_AUTH, read the way http_authorize reads it: "basic:", a realm
# field skipped up to the next colon (never compared), the user name up
# to the next colon, the password the rest. Writes the body to OUT and
# prints the last HTTP status.
write_apk_fetch() {
  cat >"$1" <<'FETCH'
#!/usr/bin/env bash
set -euo pipefail
url=$1 out=$2
code=$(curl -sS -o "$out" -w '%{http_code}' "$url")
a=${HTTP_AUTH:-}
if [ "$code" = 401 ] && [[ $url != *://*@* ]] && [[ ${a,,} == basic:*:*:* ]]; then
  a=${a:6}
  a=${a#*:}
  # (the user:password pair goes to curl on stdin, never on its command line)
  code=$(printf 'user = "%s"\n' "$a" | curl -sS -K - -o "$out" -w '%{http_code}' "$url")
fi
echo "$code"
FETCH
  chmod 755 "$1"
}

# apk_install_check PKG DIR: the text that does what `apk update` and
# `apk add PKG` do, with the last line of /etc/apk/repositories: fetch
# the index, find the key its signature names in /etc/apk/keys and verify
# the signature with it (RSA over the SHA-1, or SHA-256, of the index's
# second gzip stream), then fetch PKG and list it. Each failure says why,
# with tollgate's answer.
apk_install_check() {
  cat <<CHECK
pkg=$1 d=$2 arch=$apk_arch fetch=$tmp/bin/apk-fetch
CHECK
  cat <<'CHECK'
# (Every reader below reads its pipe to the end: a writer killed by
# SIGPIPE would fail the script silently under pipefail.)
repo=$(grep -v '^#' /etc/apk/repositories | tail -n 1)
code=$("$fetch" "$repo/$arch/APKINDEX.tar.gz" "$d/APKINDEX.tar.gz")
[ "$code" = 200 ] || { echo "APKINDEX: HTTP $code: $(head -c 300 "$d/APKINDEX.tar.gz")"; exit 1; }
sig=$(tar -tzf "$d/APKINDEX.tar.gz" | sed -n 1p)
key=$(printf '%s\n' "$sig" | sed -nE 's/^\.SIGN\.RSA(256)?\.//p')
[ -n "$key" ] && [ -s "/etc/apk/keys/$key" ] || { echo "the index is signed as $sig: no such key in /etc/apk/keys ($(ls /etc/apk/keys))"; exit 1; }
tar -xzOf "$d/APKINDEX.tar.gz" "$sig" >"$d/index.sig"
python3 -c 'import sys, zlib; d = zlib.decompressobj(31); d.decompress(open(sys.argv[1], "rb").read()); open(sys.argv[2], "wb").write(d.unused_data)' "$d/APKINDEX.tar.gz" "$d/index.signed"
dgst=-sha1
case $sig in .SIGN.RSA256.*) dgst=-sha256 ;; esac
openssl dgst "$dgst" -verify "/etc/apk/keys/$key" -signature "$d/index.sig" "$d/index.signed"
v=$(tar -xzOf "$d/APKINDEX.tar.gz" APKINDEX | awk -v p="P:$pkg" '$0 == p { f = 1 } f && /^V:/ && v == "" { v = substr($0, 3) } END { print v }')
[ -n "$v" ] || { echo "$pkg is not in the index"; exit 1; }
code=$("$fetch" "$repo/$arch/$pkg-$v.apk" "$d/$pkg.apk")
[ "$code" = 200 ] || { echo "$pkg-$v.apk: HTTP $code: $(head -c 300 "$d/$pkg.apk")"; exit 1; }
tar -tzf "$d/$pkg.apk" 2>/dev/null | grep -x "usr/share/$pkg/hello.txt"
CHECK
}

if want apk; then
  section "apk (the exact text \`token show --reveal\` and the TLS dev printout print for apk-tools, in a private /etc, /usr and /var)"
  if ! have unshare || ! have curl || ! have wget || ! have openssl || ! have python3; then
    missing "apk: unshare, curl, wget, openssl or python3 is not installed"
  elif [ "$(id -u)" != 0 ]; then
    missing "apk: needs root (unshare --mount with overlays over /etc, /usr and /var)"
  elif [ $plain_ok = 0 ]; then
    fail "apk: no tollgate instance"
  else
    ak=$tmp/apk
    mkdir -p "$ak/files"
    write_apk_fetch "$tmp/bin/apk-fetch"
    apk_arch=$(sed -n 's/^TOLLGATE_APK_ARCH=//p' "$tmp/plain/dev.env")
    apk_pkg=$(sed -n 's/^TOLLGATE_APK_PACKAGE=//p' "$tmp/plain/dev.env")
    apk_denied=$(sed -n 's/^TOLLGATE_APK_DENIED_URL=//p' "$tmp/plain/dev.env")
    create_token plain apk_secret demo --scope images,packages
    apk_id=${apk_secret_id:-}
    ok "tollgate token show --reveal (images,packages token)" tg plain token show "$apk_id" --reveal &&
      cp "$out" "$ak/show.txt"
    snippets "$ak/show.txt" 'apk signing key os' >"$ak/key.sh"
    snippets "$ak/show.txt" 'apk repository os [(]token in HTTP_AUTH[)]' >"$ak/auth.sh"
    snippets "$ak/show.txt" 'apk repository os [(]token in the URL[^)]*[)]' >"$ak/url.sh"
    check "token show prints the apk key step (into /etc/apk/keys, from tollgate's public key URL)" \
      grep -q '^[^#]*wget .* -O /etc/apk/keys/[^ ]* http://[^ ]*/keys/apk/os/' "$ak/key.sh"
    check "token show prints the HTTP_AUTH repository step: the line, HTTP_AUTH=basic:HOST:tollgate:TOKEN (no port), apk update" \
      bash -c 'grep -qx "echo '\''$2/apk/os'\'' | .*tee -a /etc/apk/repositories >/dev/null" "$1" &&
        grep -qx "export HTTP_AUTH='\''basic:${3%:*}:tollgate:$4'\''" "$1" && grep -q "apk update$" "$1"' _ "$ak/auth.sh" "$plain_url" "$plain_host" "$apk_secret"
    check "token show prints the token-in-URL repository step" grep -qF "http://tollgate:$apk_secret@$plain_host/apk/os'" "$ak/url.sh"
    # The apk line of the dev printout, after the steps ("then: ...").
    apk_add=$(sed -nE 's/^then: .* or (.* apk add [^ ]+) +\(apk\)$/\1/p' "$tmp/logs/plain.out")
    check "the dev printout's apk add line passes HTTP_AUTH on" bash -c '[[ $1 == *"env HTTP_AUTH=\"\$HTTP_AUTH\" apk add $2" ]]' _ "$apk_add" "$apk_pkg"
    if have apk; then
      # The printed text whole, apk update and apk add included.
      for form in auth url; do
        {
          cat "$ak/key.sh" "$ak/$form.sh"
          if [ $form = auth ]; then printf '%s\n' "$apk_add"; else echo '$(command -v sudo) apk add '"$apk_pkg"; fi
          echo "apk info -e $apk_pkg"
          echo "cat /usr/share/$apk_pkg/hello.txt"
        } >"$ak/$form-run.sh"
        ok "apk ($form): the printed key and repository steps, apk update and apk add $apk_pkg" apk_root "$ak/$form-run.sh" &&
          check "apk ($form) installed $apk_pkg" grep -q 'Hello from a package' "$out"
      done
      { cat "$ak/key.sh" "$ak/auth.sh"; echo "echo '$apk_denied' | tee -a /etc/apk/repositories"; echo 'env HTTP_AUTH="$HTTP_AUTH" apk update'; } >"$ak/denied-run.sh"
      refused "apk update of a repository the account is not entitled to fails" 'permission denied|forbidden|403' apk_root "$ak/denied-run.sh"
    else
      skip "apk update and apk add as printed: apk-tools is not installed (Debian has no apk-tools package; see the comment above apk_root): the steps below run without their apk lines"
    fi
    # The printed text but its apk lines, then what apk update and apk add do.
    drop_apk() { grep -Ev '(^|[ ])apk( |$)' "$@"; }
    {
      drop_apk "$ak/key.sh"
      drop_apk "$ak/auth.sh"
      apk_install_check "$apk_pkg" "$ak/files"
    } >"$ak/auth-fetch.sh"
    ok "apk (HTTP_AUTH): the printed steps as is but the apk line, then the index (401, then Basic from HTTP_AUTH as libfetch sends it), its signature with the installed key, and $apk_pkg" \
      apk_root "$ak/auth-fetch.sh" &&
      check "the package holds usr/share/$apk_pkg/hello.txt" grep -qx "usr/share/$apk_pkg/hello.txt" "$out"
    { drop_apk "$ak/key.sh"; drop_apk "$ak/url.sh"; apk_install_check "$apk_pkg" "$ak/files"; } >"$ak/url-fetch.sh"
    ok "apk (token in the URL): the printed steps as is but the apk line, then the index, its signature and $apk_pkg" apk_root "$ak/url-fetch.sh"
    # Over TLS with a private CA: the TLS dev printout's CA, key and
    # repository steps (wget and the fetches verify the certificate).
    if [ $tls_ok = 1 ]; then
      {
        snippets "$tmp/logs/tls.out" "packages: trust tollgate's CA [(][^)]*[)]|apk signing key os|apk repository os [(]token in HTTP_AUTH[)]" | drop_apk
        apk_install_check "$apk_pkg" "$ak/files"
      } >"$ak/tls-fetch.sh"
      check "the TLS printout's apk steps trust the CA and use https" \
        bash -c 'grep -q update-ca-certificates "$1" && grep -q "wget .* https://" "$1" && grep -q "^echo '\''https://" "$1"' _ "$ak/tls-fetch.sh"
      ok "apk over https with a private CA: the TLS dev printout's CA, key and HTTP_AUTH repository steps but the apk line, then the index, its signature and $apk_pkg" \
        apk_root "$ak/tls-fetch.sh"
    fi
    # Without the key step the signature names a key that is not there.
    { drop_apk "$ak/auth.sh"; apk_install_check "$apk_pkg" "$ak/files"; } >"$ak/nokey-fetch.sh"
    refused "apk without the printed key step: the index's signing key is not in /etc/apk/keys" 'no such key in /etc/apk/keys' apk_root "$ak/nokey-fetch.sh"
    # Refusals, with the reason tollgate gives (apk itself shows only the
    # HTTP status): a repository the account is not entitled to, a token
    # without the packages scope, a revoked token.
    { drop_apk "$ak/key.sh"; drop_apk "$ak/auth.sh"; echo "echo '$apk_denied' | tee -a /etc/apk/repositories"; apk_install_check "$apk_pkg" "$ak/files"; } >"$ak/denied-fetch.sh"
    refused "apk: the repository the account is not entitled to is refused, with the reason" \
      'HTTP 403: forbidden: the subscription does not include package repository' apk_root "$ak/denied-fetch.sh"
    create_token plain apk_images demo --scope images
    ok "tollgate token show --reveal (images-only token)" tg plain token show "${apk_images_id:-}" --reveal &&
      check "a token without the packages scope is shown no apk steps" bash -c '! grep -q "/etc/apk/" "$1"' _ "$out"
    sed "s/$apk_secret/$apk_images/g" "$ak/auth-fetch.sh" >"$ak/images-fetch.sh"
    refused "apk: the printed HTTP_AUTH steps with a token without the packages scope are refused, with the reason" \
      'HTTP 403: forbidden: this token does not have the packages scope' apk_root "$ak/images-fetch.sh"
    revoke plain "$apk_id"
    refused "apk: the printed HTTP_AUTH steps of a revoked token are refused" 'APKINDEX: HTTP 401' apk_root "$ak/auth-fetch.sh"
    refused "apk: the printed token-in-URL steps of a revoked token are refused" 'APKINDEX: HTTP 401' apk_root "$ak/url-fetch.sh"
    if have apk; then
      { cat "$ak/key.sh" "$ak/auth.sh"; } >"$ak/revoked-run.sh"
      refused "apk update with the printed HTTP_AUTH of a revoked token fails" 'permission denied|unauthori[sz]ed|401' apk_root "$ak/revoked-run.sh"
    fi
  fi
  section_end
fi

# ---------------------------------------------------------------- console

# form_csrf URL JAR: the CSRF token of the first form on the console page at URL.
form_csrf() {
  local page
  page=$(curl -fsS -c "$2" -b "$2" "$1") || return 1
  sed -nE '/name="csrf"/{s/.*name="csrf" value="([^"]*)".*/\1/p;q}' <<<"$page"
}
# console_sign_in NAME JAR: sets the demo admin's password through the
# one-time link the `tollgate dev` printout gives, and signs in; the
# session cookie is in JAR.
console_sign_in() {
  local url=${1}_url link csrf pw
  url=${!url}
  link=$(grep -o 'http[^ ]*/console/set-password?t=[A-Za-z0-9_-]*' "$tmp/logs/$1.out" | head -n 1)
  [ -n "$link" ] || { echo "no set-password link in the dev printout"; return 1; }
  pw=e2e-$RANDOM-$RANDOM-password
  secrets+=("$pw" "${link#*t=}")
  csrf=$(form_csrf "$link" "$2") &&
    curl -fsS -o /dev/null -c "$2" -b "$2" --data-urlencode "csrf=$csrf" --data-urlencode "t=${link#*t=}" \
      --data-urlencode "password=$pw" --data-urlencode "confirm=$pw" "$url/console/set-password" &&
    csrf=$(form_csrf "$url/console/sign-in" "$2") &&
    curl -fsS -o /dev/null -c "$2" -b "$2" --data-urlencode "csrf=$csrf" --data-urlencode "email=admin@demo.example" \
      --data-urlencode "password=$pw" "$url/console/sign-in" &&
    curl -fsS -b "$2" -o "$tmp/console-tokens.html" "$url/console/tokens" &&
    grep -q 'class="card"' "$tmp/console-tokens.html"
}
# console_reveal NAME JAR ID OUT: presses the card's Reveal (the form,
# without JavaScript) and writes the commands the page then shows, as
# text ("# TITLE" then the command, as `token show` prints them).
console_reveal() {
  local url=${1}_url csrf
  url=${!url}
  csrf=$(form_csrf "$url/console/tokens" "$2") || return 1
  curl -fsS -b "$2" --data-urlencode "csrf=$csrf" "$url/console/tokens/$3/reveal" >"$4.html" || return 1
  awk -v id="$3" '
    /<div class="cmd-head"><span>/ { t = $0; sub(/.*<div class="cmd-head"><span>/, "", t); sub(/<\/span>.*/, "", t) }
    index($0, "<pre id=\"cmd-" id "-") { inpre = 1; printf "# %s\n", t; sub(/^[^>]*<pre[^>]*>/, "") }
    inpre { l = $0; if (sub(/<\/pre>.*/, "", l)) { print l; print ""; inpre = 0 } else print l }
  ' "$4.html" | sed -e "s/&#39;/'/g" -e 's/&#34;/"/g' -e 's/&quot;/"/g' -e 's/&lt;/</g' -e 's/&gt;/>/g' \
    -e 's/&#43;/+/g' -e 's/&amp;/\&/g' >"$4"
  [ -s "$4" ]
}


if want console; then
  section "console (the set-up text a token card shows after Reveal, run as is)"
  if ! have curl; then
    missing "console: curl is not installed"
  elif [ $plain_ok = 0 ]; then
    fail "console: no tollgate instance"
  else
    cn=$tmp/console
    mkdir -p "$cn"
    ok "console: set a password with the printed one-time link and sign in" console_sign_in plain "$cn/jar"
    create_token plain cn_secret demo --scope images,packages
    cn_id=${cn_secret_id:-}
    ok "console: Reveal on the token's card shows its set-up commands" console_reveal plain "$cn/jar" "$cn_id" "$cn/console.txt" &&
      check "the revealed commands carry the token's secret" grep -qF "$cn_secret" "$cn/console.txt"
    tg plain token show "$cn_id" --reveal >"$cn/show.txt" 2>&1
    same_text() { diff <(snippets "$cn/console.txt" '.*') <(snippets "$cn/show.txt" '.*') && [ -s "$cn/show.txt" ]; }
    ok "the console's commands are byte for byte what token show --reveal prints" same_text
    if have apt-get && have unshare && [ "$(id -u)" = 0 ]; then
      apt_script "$cn/console.txt" deb822 "$cn/apt-run.sh"
      ok "apt: the console's text run as is in a private root, then apt-get update --error-on=any and install --download-only" \
        in_root "$cn/apt-run.sh" &&
        check "apt (console text) downloaded the package" grep -q '\.deb$' "$out"
    else
      missing "console: apt-get, unshare or root for the apt check"
    fi
    # The Kubernetes steps as printed, with the kubectl stand-in.
    write_kubectl "$cn/kube"
    snippets "$cn/console.txt" 'Kubernetes pull secret|Kubernetes: pull with the secret' >"$cn/kube.sh"
    kube_run() { PATH=$cn/kube:$PATH KUBE_DIR=$cn/kube bash -euo pipefail "$cn/kube.sh"; }
    ok "Kubernetes: the console's kubectl lines run as is (kubectl stand-in)" kube_run &&
      check "the service account patch names the secret the first line created" \
        bash -c 'f=$(ls "$1"/*.dockerconfigjson) && n=$(basename "$f" .dockerconfigjson) && grep -qF "{\"name\":\"$n\"}" "$1/patch-default.json"' _ "$cn/kube"
    if have skopeo; then
      echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$cn/policy.json"
      kube_pull() { skopeo --policy "$cn/policy.json" inspect --tls-verify=false --authfile "$cn/kube/tollgate-pull.dockerconfigjson" "docker://$plain_image"; }
      ok "a pull with the secret kubectl would have made (skopeo --authfile)" kube_pull
      revoke plain "$cn_id"
      refused "the same secret after the token's revocation is refused" "$denied_re" kube_pull
    else
      missing "console: skopeo for the pull with the secret"
    fi
  fi
fi

# ---------------------------------------------------------------- policy

# Per-token policy with real clients on the plain instance: a token
# restricted to some images pulls them and is refused another image its
# account is entitled to (crane, skopeo); a package restriction with
# apt-get; a network rule with curl bound to 127.0.0.2 and 127.0.0.3;
# pause, refused, resume, works; a monthly pull cap reached refuses the
# next pull. The refusal from the wrong address then shows on the token's
# console card.
if want policy; then
  section "per-token policy (restrictions, networks, pause, caps) with crane, skopeo, curl and apt-get"
  if [ "${plain_ok:-0}" = 0 ]; then
    fail "policy: no tollgate instance"
  elif [ -z "$crane" ]; then
    missing "policy: crane was not built"
  else
    po=$tmp/policy
    mkdir -p "$po"
    private_image=$plain_denied
    # An account entitled to both images: only a token's restriction can refuse the second.
    if tg plain account create policy-e2e >"$po/account.log" 2>&1 &&
      tg plain account entitle policy-e2e --images 'demo/**,private/**' >>"$po/account.log" 2>&1; then
      pass "an account entitled to ${plain_image%:*} and ${private_image%:*}"
    else
      fail "tollgate account create/entitle policy-e2e" "$po/account.log"
    fi
    po_crane() { # po_crane SECRET ARGS...: crane with a config holding SECRET for the plain host
      local d
      d=$po/crane-$(printf '%s' "$1" | sha256sum | cut -c1-12)
      [ -d "$d" ] || DOCKER_CONFIG=$d "$crane" auth login "$plain_host" -u tollgate --password-stdin <<<"$1" >/dev/null 2>&1
      DOCKER_CONFIG=$d "$crane" "${@:2}" --insecure
    }
    po_skopeo() { # po_skopeo SECRET IMAGE
      skopeo inspect --tls-verify=false --creds "tollgate:$1" "docker://$2"
    }
    policy_re='restrictions|denied|unauthori[sz]ed'
    if create_token plain po_restricted policy-e2e --restrict-images 'demo/**'; then
      ok "restricted token: crane pull of the allowed image" po_crane "$po_restricted" pull "$plain_image" "$po/allowed.tar"
      refused "restricted token: crane manifest of the other entitled image is refused, naming the restriction" \
        'restrictions' po_crane "$po_restricted" manifest "$private_image"
      if have skopeo; then
        ok "restricted token: skopeo inspect of the allowed image" po_skopeo "$po_restricted" "$plain_image"
        refused "restricted token: skopeo inspect of the other entitled image is refused" "$policy_re" po_skopeo "$po_restricted" "$private_image"
      else
        missing "policy: skopeo is not installed"
      fi
      if create_token plain po_wide policy-e2e; then
        ok "an unrestricted token of the same account pulls the other image (the subscription allows it)" \
          po_crane "$po_wide" manifest "$private_image"
      fi
    fi
    # Networks: curl from two loopback addresses (the edge sees the client's own).
    if have curl && create_token plain po_net demo --networks 127.0.0.2/32; then
      po_repo=${plain_image#*/}
      po_repo=${po_repo%:*}
      token_from() { # token_from ADDR SECRET: the status /token answers a client bound to ADDR
        curl -sS -o "$po/token-$1.json" -w '%{http_code}' --interface "$1" -u "tollgate:$2" \
          "$plain_url/token?service=$plain_host&scope=repository:$po_repo:pull"
      }
      code_is() { [ "$(token_from "$2" "$3")" = "$1" ]; }
      ok "network rule 127.0.0.2/32: curl --interface 127.0.0.2 gets a token" code_is 200 127.0.0.2 "$po_net"
      ok "network rule 127.0.0.2/32: curl --interface 127.0.0.3 is refused (403)" code_is 403 127.0.0.3 "$po_net" &&
        check "the refusal names the rule, never the list" \
          bash -c 'grep -q "allowed-networks" "$1" && ! grep -q "127.0.0.2" "$1"' _ "$po/token-127.0.0.3.json"
      refused "network rule: crane (from 127.0.0.1) is refused" "$policy_re|may not be used from this address" po_crane "$po_net" manifest "$plain_image"
      # The refusals show on the token's console card (the console section signed in).
      if [ -s "$tmp/console/jar" ]; then
        card_shows() {
          local i
          for i in $(seq 1 20); do
            curl -fsS -b "$tmp/console/jar" "$plain_url/console/tokens?open=$po_net_id" >"$po/card.html" 2>/dev/null &&
              grep -q 'Refused attempts' "$po/card.html" && grep -q '<code>127.0.0.3</code>' "$po/card.html" &&
              grep -q 'outside its networks' "$po/card.html" && return 0
            sleep 0.5
          done
          return 1
        }
        ok "the console card of the network-bound token lists its refused attempts (127.0.0.3, outside its networks)" card_shows
      fi
    fi
    # Pause, refused, resume, works.
    if create_token plain po_pause demo; then
      ok "token pulls before the pause" po_crane "$po_pause" manifest "$plain_image"
      tg plain token pause "$po_pause_id" >"$po/pause.log" 2>&1 || fail "tollgate token pause" "$po/pause.log"
      refused "paused token: crane is refused, saying it is paused" 'paused' po_crane "$po_pause" manifest "$plain_image"
      tg plain token resume "$po_pause_id" >"$po/resume.log" 2>&1 || fail "tollgate token resume" "$po/resume.log"
      ok "resumed token: crane pulls again" po_crane "$po_pause" manifest "$plain_image"
    fi
    # A monthly cap of 2 pulls: the third manifest GET is refused until the month ends.
    if create_token plain po_cap demo --max-pulls 2; then
      ok "capped token (2 pulls a month): pull 1" po_crane "$po_cap" manifest "$plain_image"
      ok "capped token: pull 2" po_crane "$po_cap" manifest "$plain_image"
      refused "capped token: pull 3 is refused, saying the cap is reached and when it resets" \
        'monthly pull cap .*resets on [0-9]{4}-[0-9]{2}-01' po_crane "$po_cap" manifest "$plain_image"
    fi
    # apt-get with a package restriction: the printed steps work for a token
    # limited to the repository, and the same steps with a token limited
    # to another repository fail with 403.
    if have apt-get && have unshare && [ "$(id -u)" = 0 ]; then
      if create_token plain po_apt demo --scope images,packages --restrict-packages os &&
        create_token plain po_apt_other demo --scope images,packages --restrict-packages 'other*'; then
        tg plain token show "$po_apt_id" --reveal >"$po/apt-show.txt" 2>&1
        apt_script "$po/apt-show.txt" deb822 "$po/apt-run.sh"
        ok "package restriction os: apt-get update and install --download-only with the printed steps" in_root "$po/apt-run.sh" &&
          check "apt downloaded the package" grep -q '\.deb$' "$out"
        sed "s/$po_apt/$po_apt_other/g" "$po/apt-run.sh" >"$po/apt-other-run.sh"
        refused "a token restricted to other repositories: the same steps fail at apt-get update (403)" '403 +Forbidden' in_root "$po/apt-other-run.sh"
      fi
    else
      missing "policy: apt-get, unshare or root for the package restriction"
    fi
  fi
fi

# ---------------------------------------------------------------- keyless

# Keyless pulls: a GitHub Actions job's OIDC token (its real claim set)
# from a test issuer on a loopback port (tollgate dev admits loopback
# issuers; production only https on public addresses). The demo account
# trusts acme/app's workflows with `tollgate trust create`; the docker
# login line it prints runs as is with the token in $ID_TOKEN, docker and
# podman pull with it, the RFC 8693 exchange gives a tge_ credential
# podman pulls with; the same job's token for another repository is
# refused, and deleting the policy ends the credential at once.
if want keyless; then
  section "keyless (an OIDC token from a local issuer: the printed docker login, podman, the exchange)"
  if [ "${plain_ok:-0}" = 0 ]; then
    fail "keyless: no tollgate instance"
  else
    kl=$tmp/keyless
    mkdir -p "$kl"
    issuer=""
    if go build -o "$tmp/bin/oidc-issuer" ./internal/dev/oidcissuer/cmd/oidc-issuer >"$tmp/logs/oidc-issuer-build.log" 2>&1; then
      "$tmp/bin/oidc-issuer" --out "$kl/issuer" >"$tmp/logs/oidc-issuer.log" 2>&1 &
      pids+=($!)
      for i in $(seq 1 100); do [ -s "$kl/issuer" ] && break; sleep 0.1; done
      issuer=$(cat "$kl/issuer" 2>/dev/null)
    fi
    if [ -z "$issuer" ]; then
      fail "keyless: the test OIDC issuer did not start" "$tmp/logs/oidc-issuer-build.log"
    else
      echo "   test OIDC issuer at $issuer"
      # job_token REPOSITORY: a GitHub Actions job's token for tollgate:demo.
      job_token() { curl -fsS "$issuer/dev/sign?repository=$1&aud=tollgate:demo"; }
      ID_TOKEN=$(job_token acme/app) && OTHER_TOKEN=$(job_token acme/other)
      secrets+=("$ID_TOKEN" "$OTHER_TOKEN")
      export ID_TOKEN
      if ok "tollgate trust create: the demo account trusts acme/app's workflows" \
        tg plain trust create --account demo --name e2e-gha --issuer "$issuer" --claim repository=acme/app --claim 'ref~refs/heads/*'; then
        cp "$out" "$kl/create.txt"
        grep -E '^ +echo "\$ID_TOKEN" \| docker login ' "$kl/create.txt" | sed 's/^ *//' >"$kl/login.sh"
        check "trust create prints the docker login line" grep -q 'docker login' "$kl/login.sh"
        policy_id=$(sed -nE 's/^id: +(tp_[A-Za-z0-9]+)$/\1/p' "$kl/create.txt")
      fi
      if have docker && have dockerd && have unshare && [ "$(id -u)" = 0 ] && start_dockerd; then
        ok "docker login: the line trust create printed, run as is with the job's OIDC token" run_printed "$kl/docker" "$kl/login.sh"
        ok "docker pull of the demo image with the OIDC login" docker_pull "$kl/docker" "$plain_image"
        refused "docker pull of the non-entitled image with the OIDC login is refused" "$denied_re" docker_pull "$kl/docker" "$plain_denied"
        refused "docker login with the token of a job in another repository fails" "$denied_re" \
          bash -c 'printf %s "$1" | DOCKER_CONFIG=$2 docker login "$3" -u oidc --password-stdin' _ "$OTHER_TOKEN" "$kl/docker-other" "$plain_host"
      else
        missing "keyless: docker (CLI, dockerd, root) for the docker login"
      fi
      if have podman; then
        podman_env "$kl/podman"
        KP=(podman --root "$kl/podman/root" --runroot "$kl/podman/run" --tmpdir "$kl/podman/tmp" --storage-driver vfs
          --cgroup-manager cgroupfs --events-backend file)
        kl_pull() { "${KP[@]}" pull --tls-verify=false --signature-policy "$kl/podman/policy.json" --creds "$2" "$1"; }
        ok "podman pull with the job's OIDC token as the password" kl_pull "$plain_image" "oidc:$ID_TOKEN"
        refused "podman pull with the token of a job in another repository is refused" "$denied_re" kl_pull "$plain_image" "oidc:$OTHER_TOKEN"
        exchange() {
          curl -sS --fail-with-body "$plain_url/oauth2/token" -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
            -d subject_token_type=urn:ietf:params:oauth:token-type:jwt --data-urlencode "subject_token=$1"
        }
        if ok "POST /oauth2/token exchanges the job's token" exchange "$ID_TOKEN"; then
          tge=$(sed -nE 's/.*"access_token":"(tge_[A-Za-z0-9]+)".*/\1/p' "$out")
          secrets+=("$tge")
          check "the exchange answers a tge_ credential (N_A, expires_in)" grep -q '"token_type":"N_A"' "$out"
          ok "podman pull with the exchanged credential (user tollgate)" kl_pull "$plain_image" "tollgate:$tge"
          ok "tollgate trust show lists the credentials with the workload identity" tg plain trust show "$policy_id" &&
            check "trust show names the job (repo:acme/app:ref:refs/heads/main)" grep -q 'repo:acme/app:ref:refs/heads/main' "$out"
          ok "tollgate trust delete" tg plain trust delete "$policy_id"
          refused "podman pull with the exchanged credential after the policy was deleted is refused" "$denied_re" kl_pull "$plain_image" "tollgate:$tge"
          refused "podman pull with the OIDC token after the policy was deleted is refused" "$denied_re" kl_pull "$plain_image" "oidc:$ID_TOKEN"
        fi
        refused "POST /oauth2/token with the other repository's token: 400 invalid_grant" 'invalid_grant' exchange "$OTHER_TOKEN"
        unset CONTAINERS_REGISTRIES_CONF CONTAINERS_STORAGE_CONF CONTAINERS_CONF
      else
        missing "keyless: podman is not installed"
      fi
      unset ID_TOKEN
    fi
  fi
  section_end
fi

# ---------------------------------------------------------------- usage

# Pull insight: what the real clients above fetched through the plain
# instance (podman's pulls, apt-get's downloads) must show in `tollgate
# usage`, by repository, with bytes. Replicas write aggregates every
# usage.flush_interval (10 s), so wait for them.
if want usage; then
  section "pull insight (tollgate usage shows what the clients above fetched)"
  if [ "${plain_ok:-0}" = 0 ]; then
    fail "usage: no tollgate instance"
  else
    usage_shows() { # usage_shows REGEX: poll up to 30 s
      local i
      for i in $(seq 1 60); do
        tg plain usage --account demo >"$tmp/logs/usage.out" 2>&1 && grep -Eq -- "$1" "$tmp/logs/usage.out" && return 0
        sleep 0.5
      done
      cat "$tmp/logs/usage.out"
      return 1
    }
    if have podman; then
      ok "tollgate usage lists demo/hello with pulls and bytes after podman pulled it" usage_shows 'image +demo/hello +[1-9][0-9]* +[0-9.]+ [KMG]?i?B'
    fi
    if have apt-get && [ "$(id -u)" = 0 ]; then
      ok "tollgate usage lists the apt repository with downloads after apt-get fetched from it" usage_shows 'package +apt/os +[1-9]'
    fi
  fi
  section_end
fi

# ---------------------------------------------------------------- logs

section "tollgate logs"
for name in plain tls; do
  [ -e "$tmp/logs/$name.err" ] || continue
  if grep -Eqi 'panic|fatal error|data race' "$tmp/logs/$name.err"; then
    fail "tollgate dev ($name) logged a panic" "$tmp/logs/$name.err"
  else
    pass "tollgate dev ($name): no panic in its log"
  fi
done
section_end

summary="$npass passed, $nfail failed"
[ $nskip -gt 0 ] && summary="$summary, $nskip skipped"
echo "e2e-clients took $((SECONDS - started))s"
echo "$summary"
[ $nfail -eq 0 ]

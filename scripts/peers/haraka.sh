#!/usr/bin/env bash
# A third submission server for benchmarks: Haraka (Node.js, from npm, the version pinned in
# bench/peers/haraka/package.json) on one loopback port, STARTTLS with a certificate made
# here, AUTH PLAIN/LOGIN checked by the auth/flat_file plugin (one user, the password in
# plain text in the flat file), any recipient accepted once authenticated (Haraka lets an
# authenticated session relay), and every accepted message discarded by queue/discard.
#
# Durability: Haraka says 250 after DATA once the message is in memory; queue/discard then
# drops it. Nothing is written to disk, nothing is fsync'd, unlike Postfix (its queue file)
# and smtpgate (its spool file, fsync'd before the 250). The benchmark states this.
#
# Everything lives under $PEER_BASE; nothing outside it and bench/peers/haraka/node_modules
# is written. Needs node and npm (>= 20) on PATH; not root.
#
#   haraka.sh install   npm install of the pinned Haraka into bench/peers/haraka (once)
#   haraka.sh config    write $PEER_BASE: configuration, certificate, user
#   haraka.sh run       install and config when needed, then run Haraka in the foreground
#                       (exec: the caller's child is Haraka's master process)
#   haraka.sh check     send one message with swaks (STARTTLS + AUTH PLAIN), expect 250
#   haraka.sh clean     remove $PEER_BASE
#
# Knobs (environment, with defaults):
#   PEER_BASE=/tmp/smtpgate-haraka   configuration (config/), certificate, log
#   PORT=2588                        submission port on 127.0.0.1
#   SMTP_USER=alice@example.test     the one user
#   SMTP_PASS=peer-password-change-me
#   NODES=$(nproc)                   Haraka's cluster workers (smtp.ini nodes)
#   LOG_LEVEL=notice                 Haraka's log level (one line per connection at notice)
#   KEYTYPE=rsa                      rsa (2048) or ec (P-256), for a new certificate only
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PACKAGE_DIR=$(cd "$HERE/../../bench/peers/haraka" && pwd)
# shellcheck source=certificate.sh
source "$HERE/certificate.sh"
PEER_BASE=${PEER_BASE:-/tmp/smtpgate-haraka}
PORT=${PORT:-2588}
SMTP_USER=${SMTP_USER:-alice@example.test}
SMTP_PASS=${SMTP_PASS:-peer-password-change-me}
NODES=${NODES:-$(nproc)}
LOG_LEVEL=${LOG_LEVEL:-notice}
KEYTYPE=${KEYTYPE:-rsa}
haraka_bin=$PACKAGE_DIR/node_modules/Haraka/bin/haraka
config=$PEER_BASE/config

say() { echo "haraka-peer: $*" >&2; }
die() { say "$*"; exit 1; }

cmd_install() {
  [ -x "$haraka_bin" ] && return 0
  command -v npm >/dev/null || die "npm not found: install Node.js 20 or later (apt-get install nodejs npm)"
  say "installing Haraka (pinned in $PACKAGE_DIR/package.json) with npm"
  if [ -f "$PACKAGE_DIR/package-lock.json" ]; then
    npm ci --prefix "$PACKAGE_DIR" --no-audit --no-fund --loglevel=error >&2
  else
    npm install --prefix "$PACKAGE_DIR" --no-audit --no-fund --loglevel=error >&2
  fi
  [ -x "$haraka_bin" ] || die "npm did not install $haraka_bin"
}

make_certificate() {
  [ -s "$config/tls_cert.pem" ] && [ -s "$config/tls_key.pem" ] && return 0
  self_signed_certificate "$KEYTYPE" "$config/tls_key.pem" "$config/tls_cert.pem"
  # the RFC 7919 group, at once (Haraka would otherwise run `openssl dhparam 2048` at start)
  openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out "$config/dhparams.pem" 2>/dev/null
}

valid_inputs() {
  [[ $PORT =~ ^[0-9]+$ ]] || die "PORT must be a number, not '$PORT'"
  [[ $NODES =~ ^[0-9]+$ ]] || die "NODES must be a number, not '$NODES'"
  # the flat file is an ini file: a user or password with '=', ';', '[' or a newline breaks it
  [[ $SMTP_USER =~ ^[A-Za-z0-9._@+-]+$ ]] || die "SMTP_USER may hold only letters, digits and ._@+-"
  [[ $SMTP_PASS =~ ^[A-Za-z0-9._~+/-]+$ ]] || die "SMTP_PASS may hold only letters, digits and ._~+/-"
}

cmd_config() {
  valid_inputs
  cmd_install
  mkdir -p "$config"
  # Haraka's own defaults (connection.ini and the rest) first; the files below replace some
  cp -r "$PACKAGE_DIR/node_modules/Haraka/config/." "$config/"
  make_certificate
  cat >"$config/smtp.ini" <<EOF
listen=127.0.0.1:$PORT
nodes=$NODES
inactivity_timeout=300
EOF
  echo "peer-haraka.localdomain" >"$config/me"
  # bench_no_rdns: no reverse DNS lookup per connection, as Postfix's smtpd_peername_lookup=no
  printf '%s\n' bench_no_rdns tls auth/flat_file queue/discard >"$config/plugins"
  mkdir -p "$PEER_BASE/plugins"
  cat >"$PEER_BASE/plugins/bench_no_rdns.js" <<'EOF'
// The peer's client is always on loopback: answer the reverse lookup without DNS.
exports.hook_lookup_rdns = (next) => next(OK, 'localhost')
EOF
  cat >"$config/tls.ini" <<EOF
key=tls_key.pem
cert=tls_cert.pem
dhparam=dhparams.pem
minVersion=TLSv1.2
EOF
  (umask 077 && cat >"$config/auth_flat_file.ini" <<EOF
[core]
methods=PLAIN,LOGIN

[users]
$SMTP_USER=$SMTP_PASS
EOF
  )
  cat >"$config/log.ini" <<EOF
[main]
level=$LOG_LEVEL
timestamps=false
format=default
EOF
}

cmd_run() {
  cmd_install
  [ -s "$config/smtp.ini" ] || cmd_config
  # queue/discard drops a message only when asked to; this says: every message
  export YES_REALLY_DO_DISCARD=1
  exec node "$haraka_bin" -c "$PEER_BASE"
}

cmd_check() {
  swaks --server 127.0.0.1 --port "$PORT" --tls --tls-verify --tls-ca-path "$config/tls_cert.pem" \
    --auth PLAIN --auth-user "$SMTP_USER" --auth-password "$SMTP_PASS" \
    --from "$SMTP_USER" --to "someone@example.net" --silent 2
}

cmd_clean() {
  case $PEER_BASE in /|"") die "refusing to remove '$PEER_BASE'" ;; esac
  rm -rf -- "$PEER_BASE"
}

case ${1:-} in
  install) cmd_install ;;
  config) cmd_config ;;
  run) cmd_run ;;
  check) cmd_check ;;
  clean) cmd_clean ;;
  *) echo "usage: $0 install|config|run|check|clean" >&2; exit 2 ;;
esac

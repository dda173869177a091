#!/usr/bin/env bash
# A second, independent SMTP submission server for tests and benchmarks: Postfix's smtpd
# on one loopback port, STARTTLS, AUTH (PLAIN, LOGIN) checked by Dovecot's auth service,
# and every accepted message queued, then dropped by discard(8).
#
# Everything lives under $PEER_BASE; the system instances (/etc/postfix, /etc/dovecot)
# are never read, written or started. Needs root: Postfix's master runs as root and
# drops to the postfix user, Dovecot's auth to dovecot.
#
#   postfix-dovecot.sh install   apt packages (postfix dovecot-core swaks openssl)
#   postfix-dovecot.sh start     write the configuration, certificate and user; start both
#   postfix-dovecot.sh stop      stop both and wait for them to exit (ports free again)
#   postfix-dovecot.sh status    exit 0 when both run, 3 when not (LSB)
#   postfix-dovecot.sh check     send one message with swaks (STARTTLS + AUTH PLAIN), expect 250
#   postfix-dovecot.sh pids      the two master pids, one a line (for CPU/memory accounting)
#   postfix-dovecot.sh clean     stop, then remove $PEER_BASE
#
# Knobs (environment, with defaults):
#   PEER_BASE=/tmp/smtpgate-peer   everything: configuration, queue, logs, certificate
#   PORT=2587                      submission port on 127.0.0.1
#   SMTP_USER=alice@example.test   the one SASL user
#   SMTP_PASS=peer-password-change-me
#   SCHEME=SHA512-CRYPT            Dovecot password scheme (doveadm pw -l lists them)
#   IN_FLOW_DELAY=1s               Postfix's arrival throttle; 0 turns it off (benchmarks)
#   PROCESS_LIMIT=100              Postfix default_process_limit (one smtpd per connection)
#   KEYTYPE=rsa                    rsa (2048) or ec (P-256), for a new certificate only
# BASE is accepted as an older spelling of PEER_BASE.
#
# Layout: $PEER_BASE/postfix (main.cf, master.cf)  queue/  postfix-data/  dovecot/
#         tls/{cert,key}.pem (self-signed, SAN localhost and 127.0.0.1)  postfix.log  dovecot.log
set -euo pipefail

# shellcheck source=certificate.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/certificate.sh"

PEER_BASE=${PEER_BASE:-${BASE:-/tmp/smtpgate-peer}}
PORT=${PORT:-2587}
SMTP_USER=${SMTP_USER:-alice@example.test}
SMTP_PASS=${SMTP_PASS:-peer-password-change-me}
SCHEME=${SCHEME:-SHA512-CRYPT}
IN_FLOW_DELAY=${IN_FLOW_DELAY:-1s}
PROCESS_LIMIT=${PROCESS_LIMIT:-100}
KEYTYPE=${KEYTYPE:-rsa}

conf=$PEER_BASE/postfix
queue=$PEER_BASE/queue
dovecot_dir=$PEER_BASE/dovecot
dovecot_conf=$dovecot_dir/dovecot.conf
postfix_pidfile=$queue/pid/master.pid
dovecot_pidfile=$dovecot_dir/run/master.pid

say() { echo "peer: $*" >&2; }
die() { say "$*"; exit 1; }

cmd_install() {
  [ "$(id -u)" = 0 ] || die "install needs root (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix's postinst asks how to configure the system instance: leave it unconfigured.
  debconf-set-selections <<'EOF'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string peer-postfix.localdomain
EOF
  local wanted=(postfix dovecot-core swaks libnet-ssleay-perl openssl)
  dpkg -s "${wanted[@]}" >/dev/null 2>&1 && return 0
  apt-get update -qq
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${wanted[@]}"
}

pid_alive() { [ -s "$1" ] && kill -0 "$(tr -d ' \n' <"$1")" 2>/dev/null; }

make_certificate() {
  self_signed_certificate "$KEYTYPE" "$PEER_BASE/tls/key.pem" "$PEER_BASE/tls/cert.pem"
}

write_dovecot() {
  mkdir -p "$dovecot_dir/run" "$dovecot_dir/state"
  # Dovecot's passwd-file: "user:{SCHEME}hash"; readable by the auth process only.
  local hash
  hash=$(doveadm pw -s "$SCHEME" -p "$SMTP_PASS")
  printf '%s:%s\n' "$SMTP_USER" "$hash" >"$dovecot_dir/users"
  chown root:dovecot "$dovecot_dir/users"
  chmod 0640 "$dovecot_dir/users"
  cat >"$dovecot_conf" <<EOF
# Dovecot as an authentication service only: no IMAP, POP3 or LMTP listener.
instance_name = smtpgate-peer-$PORT
base_dir = $dovecot_dir/run
state_dir = $dovecot_dir/state
log_path = $PEER_BASE/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
# Postfix refuses AUTH before STARTTLS (smtpd_tls_auth_only), so Dovecot never sees
# a plaintext password over an unencrypted SMTP session.
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=$SCHEME $dovecot_dir/users
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  # Postfix's smtpd talks to it through its own queue directory (smtpd_sasl_path).
  unix_listener $queue/private/dovecot-auth {
    user = postfix
    group = postfix
    mode = 0660
  }
}
EOF
}

write_postfix() {
  mkdir -p "$conf" "$queue" "$PEER_BASE/postfix-data"
  chown postfix:postfix "$PEER_BASE/postfix-data"
  chmod 0700 "$PEER_BASE/postfix-data"
  : >"$conf/main.cf"
  # postconf writes main.cf one parameter at a time and knows their syntax.
  local settings=(
    "compatibility_level=3.6"
    "queue_directory=$queue"
    "data_directory=$PEER_BASE/postfix-data"
    "mail_owner=postfix"
    "setgid_group=postdrop"
    "maillog_file=$PEER_BASE/postfix.log"
    "maillog_file_prefixes=$PEER_BASE"
    "myhostname=peer-postfix.localdomain"
    "mydomain=localdomain"
    "myorigin=\$myhostname"
    "inet_interfaces=127.0.0.1"
    "inet_protocols=ipv4"
    "mynetworks=127.0.0.0/8"
    "smtpd_banner=\$myhostname ESMTP"
    "smtpd_peername_lookup=no"
    "biff=no"
    "append_dot_mydomain=no"
    # No local or relay domain: the only way in is SASL, the only way out is discard(8).
    "mydestination="
    "relay_domains="
    "local_recipient_maps="
    "alias_maps="
    "alias_database="
    "default_transport=discard:smtpgate-test-peer"
    "local_transport=discard:smtpgate-test-peer"
    "relay_transport=discard:smtpgate-test-peer"
    "virtual_transport=discard:smtpgate-test-peer"
    "smtpd_tls_security_level=may"
    "smtpd_tls_chain_files=$PEER_BASE/tls/key.pem, $PEER_BASE/tls/cert.pem"
    "smtpd_tls_auth_only=yes"
    "smtpd_tls_loglevel=0"
    "smtpd_sasl_auth_enable=yes"
    "smtpd_sasl_type=dovecot"
    "smtpd_sasl_path=private/dovecot-auth"
    "smtpd_sasl_security_options=noanonymous"
    "smtpd_sasl_tls_security_options=noanonymous"
    "smtpd_relay_restrictions=permit_sasl_authenticated, reject"
    "smtpd_recipient_restrictions=permit_sasl_authenticated, reject"
    "message_size_limit=10240000"
    "in_flow_delay=$IN_FLOW_DELAY"
    "default_process_limit=$PROCESS_LIMIT"
  )
  postconf -c "$conf" -e "${settings[@]}"

  # master.cf: the submission listener, and only the internal services it needs; none
  # chrooted (the queue directory is not a chroot jail).
  {
    echo "# service type private unpriv chroot wakeup maxproc command"
    echo "127.0.0.1:$PORT inet n - n - - smtpd"
    echo "  -o syslog_name=postfix/submission"
    local service
    for service in \
      "cleanup unix n - n - 0 cleanup" \
      "qmgr unix n - n 300 1 qmgr" \
      "rewrite unix - - n - - trivial-rewrite" \
      "bounce unix - - n - 0 bounce" \
      "defer unix - - n - 0 bounce" \
      "trace unix - - n - 0 bounce" \
      "verify unix - - n - 1 verify" \
      "flush unix n - n 1000? 0 flush" \
      "proxymap unix - - n - - proxymap" \
      "showq unix n - n - - showq" \
      "error unix - - n - - error" \
      "retry unix - - n - - error" \
      "discard unix - - n - - discard" \
      "tlsmgr unix - - n 1000? 1 tlsmgr" \
      "anvil unix - - n - 1 anvil" \
      "scache unix - - n - 1 scache" \
      "pickup unix n - n 60 1 pickup" \
      "postlog unix-dgram n - n - 1 postlogd"; do
      echo "$service"
    done
  } >"$conf/master.cf"
}

wait_for() {  # wait_for WHAT COMMAND...: up to 15 s
  local what=$1; shift
  for _ in $(seq 75); do "$@" && return 0; sleep 0.2; done
  die "$what did not come up within 15 s (see $PEER_BASE/postfix.log and $PEER_BASE/dovecot.log)"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
auth_socket() { [ -S "$queue/private/dovecot-auth" ]; }

cmd_start() {
  [ "$(id -u)" = 0 ] || die "start needs root (Postfix's master runs as root)"
  command -v postfix >/dev/null && command -v dovecot >/dev/null || cmd_install
  if pid_alive "$postfix_pidfile" || pid_alive "$dovecot_pidfile"; then
    say "already running under $PEER_BASE: restarting with the current settings"
    cmd_stop
  fi
  mkdir -p "$PEER_BASE/tls"
  chmod 0755 "$PEER_BASE"   # postfix and dovecot must reach their files under it
  make_certificate
  write_postfix
  write_dovecot
  # "check" also creates the queue's subdirectories with their owners and modes.
  postfix -c "$conf" check
  dovecot -c "$dovecot_conf"
  wait_for "Dovecot's auth socket" auth_socket
  postfix -c "$conf" start
  wait_for "Postfix on 127.0.0.1:$PORT" port_open
  echo "postfix+dovecot: submission on 127.0.0.1:$PORT (STARTTLS), user $SMTP_USER, CA $PEER_BASE/tls/cert.pem"
}

cmd_stop() {
  local pids=() pid
  for f in "$postfix_pidfile" "$dovecot_pidfile"; do
    pid_alive "$f" && pids+=("$(tr -d ' \n' <"$f")")
  done
  pid_alive "$postfix_pidfile" && { postfix -c "$conf" stop >/dev/null 2>&1 || true; }
  pid_alive "$dovecot_pidfile" && { dovecot -c "$dovecot_conf" stop >/dev/null 2>&1 || kill "$(tr -d ' \n' <"$dovecot_pidfile")" 2>/dev/null || true; }
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { say "pid $pid still running after 10 s: killing it"; kill -9 "$pid" 2>/dev/null || true; }
  done
  return 0
}

cmd_status() {
  local running=0 f
  for f in "$postfix_pidfile" "$dovecot_pidfile"; do
    if pid_alive "$f"; then echo "running: pid $(tr -d ' \n' <"$f") ($f)"; running=$((running + 1))
    else echo "stopped: $f"; fi
  done
  if port_open; then echo "listening: 127.0.0.1:$PORT"; else echo "not listening: 127.0.0.1:$PORT"; fi
  [ "$running" = 2 ] || return 3
}

cmd_pids() {
  local f
  for f in "$postfix_pidfile" "$dovecot_pidfile"; do pid_alive "$f" && tr -d ' \n' <"$f" && echo; done
  return 0
}

cmd_check() {
  local out=$PEER_BASE/check.log
  swaks --server 127.0.0.1 --port "$PORT" --tls --tls-verify --tls-ca-path "$PEER_BASE/tls/cert.pem" \
    --auth PLAIN --auth-user "$SMTP_USER" --auth-password "$SMTP_PASS" \
    --from "$SMTP_USER" --to someone@example.net --h-Subject "peer check" --body "check" >"$out" 2>&1 || true
  if grep -q '<~  250 2.0.0 Ok: queued' "$out"; then echo "check: accepted (250)"
  else cat "$out" >&2; die "check: the message was not accepted"; fi
}

cmd_clean() {
  cmd_stop
  case $PEER_BASE in /|"") die "refusing to remove '$PEER_BASE'" ;; esac
  rm -rf "$PEER_BASE"
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  check) cmd_check ;;
  pids) cmd_pids ;;
  clean) cmd_clean ;;
  *) echo "usage: $0 {install|start|stop|status|check|pids|clean}" >&2; exit 2 ;;
esac

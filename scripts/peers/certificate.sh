# Sourced by the peers' scripts (haraka.sh, postfix-dovecot.sh): their one self-signed certificate.
#
# self_signed_certificate KEYTYPE KEY_FILE CERT_FILE
#   KEYTYPE rsa (2048) or ec (P-256); SAN localhost and 127.0.0.1; 30 days; the key 0600,
#   the certificate 0644. Kept when both files are already there. Needs the caller's die().

self_signed_certificate() {
  local keytype=$1 key_file=$2 cert_file=$3 key
  [ -s "$cert_file" ] && [ -s "$key_file" ] && return 0
  case $keytype in
    rsa) key=(-newkey rsa:2048) ;;
    ec) key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    *) die "KEYTYPE must be rsa or ec, not '$keytype'" ;;
  esac
  (umask 077 && openssl req -x509 -nodes -days 30 "${key[@]}" -subj "/CN=localhost" \
     -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
     -keyout "$key_file" -out "$cert_file" 2>/dev/null)
  chmod 644 "$cert_file"
}

#!/bin/sh
# The container's first start makes the data dir (config, keys, local CA) for the container's
# listeners, the database and the guard named by the environment; then it runs smtpgate.
#   SMTPGATE_HOSTNAME               the server's name (greeting, certificate)
#   SMTPGATE_DATABASE_URL           PostgreSQL url without a password; empty: SQLite in the volume
#   SMTPGATE_DATABASE_PASSWORD_FILE a file holding its password (a Docker secret), given to libpq as PGPASSWORD
#   SMTPGATE_REDIS_URL              the guard's Redis (bans and counters shared by workers and nodes)
#   SMTPGATE_LISTEN                 the listeners' address (default 0.0.0.0: the container's interfaces)
set -eu
data=${SMTPGATE_DATA:-/var/lib/smtpgate}
config=$data/smtpgate.toml

if [ -n "${SMTPGATE_DATABASE_PASSWORD_FILE:-}" ]; then
  PGPASSWORD=$(cat "$SMTPGATE_DATABASE_PASSWORD_FILE")
  export PGPASSWORD
fi

if [ ! -f "$config" ]; then
  smtpgate init --data-dir "$data" --hostname "${SMTPGATE_HOSTNAME:-localhost}" --listen "${SMTPGATE_LISTEN:-0.0.0.0}" \
    --submission-port 2587 --submissions-port 2465 --admin-port 8025 \
    --database-url "${SMTPGATE_DATABASE_URL:-}" >&2   # stdout stays the command's own
  if [ -n "${SMTPGATE_REDIS_URL:-}" ]; then
    # only inside [guard]: up to the next section header
    sed -i -e '/^\[guard\]/,/^\[/ s|^backend = "[a-z]*"|backend = "redis"|' \
           -e "/^\[guard\]/,/^\[/ s|^redis_url = \"[^\"]*\"|redis_url = \"$SMTPGATE_REDIS_URL\"|" "$config"
    grep -q '^backend = "redis"' "$config" || { echo "entrypoint: could not set [guard] backend in $config" >&2; exit 2; }
  fi
fi

exec smtpgate "$@"

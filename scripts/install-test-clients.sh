#!/usr/bin/env bash
# Installs the real SMTP clients the test suite drives: swaks and mutt (Debian), nodemailer (npm).
# Best effort by default; with SMTPGATE_STRICT=1 a client that cannot be installed fails.
set -uo pipefail
cd "$(dirname "$0")/.."
strict=${SMTPGATE_STRICT:-0}
problem() { echo "install-test-clients: $*" >&2; [ "$strict" = 1 ] && exit 1; }

if ! command -v swaks >/dev/null || ! dpkg -s libnet-ssleay-perl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends swaks libnet-ssleay-perl >/dev/null \
      || problem "apt-get could not install swaks"
  else
    problem "swaks is missing (apt-get install swaks libnet-ssleay-perl); its tests will be skipped"
  fi
fi
if ! command -v mutt >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends mutt >/dev/null \
      || problem "apt-get could not install mutt"
  else
    problem "mutt is missing (apt-get install mutt); its tests will be skipped"
  fi
fi
command -v curl >/dev/null || problem "curl is missing; its tests will be skipped"
# Tools of the deployment tests: systemd-analyze (tests/deploy/test_systemd.py), setpriv (the
# unit's privileges reproduced), pg_dump/pg_restore (backup of PostgreSQL), make (make run),
# haproxy (the load balancer in front of several nodes, tests/cluster/test_haproxy.py).
for need in systemd-analyze:systemd setpriv:util-linux pg_dump:postgresql-client make:make haproxy:haproxy; do
  tool=${need%%:*} package=${need#*:}
  command -v "$tool" >/dev/null && continue
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$package" >/dev/null \
      || problem "apt-get could not install $package"
  else
    problem "$tool is missing (apt-get install $package); its tests will be skipped"
  fi
done

# Chromium and its driver for the web console's browser tests (Playwright drives Debian's
# Chromium: Playwright cannot download a browser of its own here).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends chromium chromium-driver >/dev/null \
      || problem "apt-get could not install chromium chromium-driver"
  else
    problem "chromium is missing (apt-get install chromium chromium-driver); the browser tests will be skipped"
  fi
fi

if command -v npm >/dev/null; then
  if [ ! -d tests/clients/node_modules/nodemailer ] || [ ! -d tests/clients/node_modules/axe-core ]; then
    (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || problem "npm could not install nodemailer and axe-core"
  fi
else
  problem "node/npm are missing; the nodemailer tests will be skipped"
fi
# Postfix + Dovecot, the peer of the delivery and doctor tests (tests/peer.py), from the
# project's own scripts/peers/postfix-dovecot.sh.
peer=scripts/peers/postfix-dovecot.sh
if ! command -v postfix >/dev/null || ! command -v dovecot >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    bash "$peer" install >/dev/null || problem "could not install the Postfix+Dovecot peer ($peer install)"
  else
    problem "Postfix/Dovecot are missing (run as root: bash $peer install); the Postfix peer tests will be skipped"
  fi
fi
exit 0

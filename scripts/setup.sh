#!/usr/bin/env bash
# Installs what building Portvakt needs on Debian or Ubuntu: cmake (pingora builds zlib-ng with
# it) and pkg-config. With --test, also what the tests use: xmllint (SOAP messages are validated
# against the published XSD) and Python 3 with venv (the end-to-end tests drive the stack with
# independent client libraries, installed into .venv), and redis-server (the issuer's shared
# state is tested on a real Redis: one server, a cluster, restarts), and the xmlsec1 tool
# (libxmlsec1, one of the independent verifiers of the WS-Security messages).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v cmake >/dev/null 2>&1 || packages+=(cmake)
command -v pkg-config >/dev/null 2>&1 || packages+=(pkg-config)
command -v cc >/dev/null 2>&1 || packages+=(build-essential)
if [[ "${1:-}" == "--test" ]]; then
  command -v xmllint >/dev/null 2>&1 || packages+=(libxml2-utils)
  command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
  command -v xmlsec1 >/dev/null 2>&1 || packages+=(xmlsec1)
  command -v python3 >/dev/null 2>&1 || packages+=(python3)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
fi
if ((${#packages[@]})); then
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  echo "setup: installing ${packages[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if [[ "${1:-}" == "--test" ]]; then
  if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
fi

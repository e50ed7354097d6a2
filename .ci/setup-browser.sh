#!/usr/bin/env bash
# Installs headless Chromium from Debian's packages for `make test-browser`
# (the console's browser test, driven by chromedp). Idempotent: does nothing
# when a chromium binary is already on PATH.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "setup-browser: chromium is missing and installing it needs root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 update
apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 install -y --no-install-recommends chromium fonts-dejavu-core
command -v chromium

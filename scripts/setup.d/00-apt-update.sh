#!/usr/bin/env bash
# Refreshes Debian's package lists once a day at most, so later scripts can apt-get install.
set -euo pipefail
stamp=/var/lib/apt/periodic/confluo-update-stamp
if [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
	apt-get update -qq
	mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi

#!/usr/bin/env bash
# Installs Express 4 from npm into the directory $1 (and, as root on a
# machine without them, Node.js and npm with apt-get), for lingerprobe's
# tests of a backend nobody here wrote. Prints nothing on success.
set -euo pipefail
dir=$1
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		echo "express.sh: node and npm are missing, and installing them needs root" >&2
		exit 1
	fi
	(export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm) >/dev/null
fi
cd "$dir"
npm install --silent --no-audit --no-fund --no-package-lock express@4 >/dev/null
node -e 'require("express")'

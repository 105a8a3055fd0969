#!/usr/bin/env bash
# System packages (Debian 12) the plugin's engines need. Idempotent: installs only what is missing.
set -euo pipefail
# quantum-espresso: pw.x (DFT labels) and ld1.x (pseudopotentials); openmpi comes with it
packages=(python3-venv quantum-espresso)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then echo "please install: ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

#!/usr/bin/env bash
# Installs the system packages the build needs, only if they are missing.
# librocksdb-dev: RocksDB 7.8.3 from Debian (the lanes link it through a system-library
# target; it is never vendored or built from source). pkg-config finds it.
set -euo pipefail
missing=()
for package in librocksdb-dev pkg-config; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# moto's standalone S3 server (the off-site tests run it on loopback) and the AWS CLI (the
# off-site benchmark's baseline), from PyPI, only if missing.
if ! python3 -c "import moto.server, flask" 2>/dev/null || ! command -v aws >/dev/null 2>&1; then
    echo "== installing moto[server] and awscli from PyPI"
    python3 -m pip install -q "moto[server]" awscli
fi

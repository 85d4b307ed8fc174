#!/usr/bin/env bash
# Installs the Debian 12 packages nibble needs, and only those that are missing.
set -euo pipefail
packages=(g++ cmake make pkg-config libsentencepiece-dev libpcre2-dev libcxxopts-dev doctest-dev
          nlohmann-json3-dev libcpp-httplib-dev nginx libeigen3-dev libbenchmark-dev libedit-dev g++-aarch64-linux-gnu qemu-user
          clang-format-14 clang-tidy-14 clang-14 libclang-rt-14-dev libfuzzer-14-dev libomp-14-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

#!/usr/bin/env bash
# Release packages for edge hosts: a .deb (cargo-deb: binary, hardened units, settings in
# /etc/edgegate) and a tarball with the same files, per target. For air-gapped sites,
# copy either to the host; nothing is fetched at install or run time.
#   packaging/build.sh                                   # this machine's architecture
#   packaging/build.sh aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
# Cross targets need `rustup target add T` and a cross C toolchain (gcc-aarch64-linux-gnu
# libc6-dev-arm64-cross, gcc-arm-linux-gnueabihf libc6-dev-armhf-cross); ring and the
# bundled SQLite use it. Output: target/packages/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/packages"
mkdir -p "$OUT"
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
VERSION="$(awk -F'"' '/^version/ {print $2; exit}' "$ROOT/Cargo.toml")"
cd "$ROOT"
for target in "${@:-host}"; do
  args=()
  bin="target/release/edgegate"
  if [ "$target" != host ]; then
    case "$target" in
      aarch64-unknown-linux-gnu) export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc ;;
      armv7-unknown-linux-gnueabihf) export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc ;;
    esac
    args=(--target "$target")
    bin="target/$target/release/edgegate"
  fi
  cargo deb --locked "${args[@]}" --output "$OUT" >&2
  name="edgegate-$VERSION-$([ "$target" = host ] && uname -m || echo "$target")"
  stage="$(mktemp -d)/$name"
  mkdir -p "$stage/systemd" "$stage/etc"
  cp "$bin" "$stage/"
  cp systemd/*.service "$stage/systemd/"
  cp packaging/gateway.conf packaging/manage.conf examples/gateway.json "$stage/etc/"
  cp README.md "$stage/"
  tar -C "$(dirname "$stage")" -czf "$OUT/$name.tar.gz" "$name"
  rm -rf "$(dirname "$stage")"
done
ls -l "$OUT"

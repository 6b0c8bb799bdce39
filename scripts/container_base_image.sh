#!/usr/bin/env bash
# A python:3.11-slim stand-in made from Debian packages, for hosts that reach no container
# registry: Debian 12 (Python 3.11) built with debootstrap and imported into podman.
#
#   scripts/container_base_image.sh [IMAGE]     # default localhost/fmnist-base:bookworm
#
# Does nothing when the image exists. DEBIAN_MIRROR overrides the mirror (default: the one apt
# uses here, else deb.debian.org).
set -euo pipefail

IMAGE="${1:-localhost/fmnist-base:bookworm}"
SUITE=bookworm

if podman image exists "$IMAGE"; then
    echo "base image $IMAGE: present"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

apt_mirror() {
    # The first Debian archive URI apt is configured with (deb822 or one-line format).
    grep -hoE '(URIs:|^deb)[[:space:]]+https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '{print $2; exit}' || true
}
MIRROR="${DEBIAN_MIRROR:-$(apt_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

ROOTFS="$(mktemp -d)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "base image $IMAGE: debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log" >&2; exit 1; }
rm -f "$ROOTFS.log"
# Slim, as Debian's official slim images are: no package lists or caches, no documentation,
# manual pages or translations (copyright files stay), and dpkg told to leave them out later.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
find "$ROOTFS/usr/share/doc" -type f ! -name copyright -delete
find "$ROOTFS/usr/share/doc" -type d -empty -delete
rm -rf "$ROOTFS"/usr/share/{man,info,locale}/*
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
tar -C "$ROOTFS" -c . | podman import --quiet \
    --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
echo "base image $IMAGE: built ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"

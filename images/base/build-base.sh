#!/usr/bin/env bash
# Make a minimal Debian base image with python3 and python3-venv, from nothing but a Debian mirror:
# for building Crucible's images where no registry is reachable (tests, air-gapped build hosts).
#   images/base/build-base.sh [TAG]          (default TAG: crucible-base:bookworm; needs root)
# The mirror is $DEBIAN_MIRROR, else the first one this host's apt sources name.
set -euo pipefail

tag=${1:-crucible-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-$(grep -h -m1 -oE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | head -n1 | sed 's/^URIs: *//')}
if [ -z "$mirror" ]; then
    mirror=$(grep -h -m1 -oE '^deb +[^ ]+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
fi
: "${mirror:?set DEBIAN_MIRROR to a Debian mirror URL}"
for tool in debootstrap docker; do
    command -v "$tool" >/dev/null || { echo "build-base: $tool is needed" >&2; exit 1; }
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# minbase: no init, no docs tooling; ca-certificates so pip can verify the package index.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" "$mirror"
# Smaller and reproducible-ish: no package lists, caches or logs in the image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$tag"
docker run --rm "$tag" python3 -c 'import venv, ensurepip; print("base ok")'

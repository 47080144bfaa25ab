#!/bin/sh
# Copy into DEST what changed under SRC after STAMP was made (files and links whose inode changed
# later: created, written or re-moded), keeping paths and attributes. The runtime images use it to ship
# the torch layer alone and, above it, only what the trainer or server adds.
#   layer-delta.sh SRC STAMP DEST
set -eu
src=$1 stamp=$2 dest=$3
mkdir -p "$dest"
cd "$src"
find . -cnewer "$stamp" \( -type f -o -type l \) -print0 | xargs -0 -r cp -a --parents -t "$dest"

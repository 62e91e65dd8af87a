#!/bin/sh
# Fetch Mbed TLS 2.28.3 as Debian ships it (the orig tarball of Debian's `mbedtls` source package,
# bookworm), check its pinned SHA-256 and unpack it into $1 (default: third_party/mbedtls).
# Idempotent: does nothing when the unpacked tree is already there. The tree is git-ignored and never
# committed; only this script and the pinned hash are.
set -eu
DEST=${1:-third_party/mbedtls}
VERSION=2.28.3
SHA256=3b4953aa55a681e084d31892d9904cc5328d6b4958ea57b90ae4b4f94ae69a8d
TARBALL=mbedtls_${VERSION}.orig.tar.gz
URLS="http://deb.debian.org/debian/pool/main/m/mbedtls/$TARBALL
https://snapshot.debian.org/archive/debian/20230320T000000Z/pool/main/m/mbedtls/$TARBALL"

if [ -f "$DEST/.complete" ]; then exit 0; fi
CACHE=$(dirname "$DEST")/download
mkdir -p "$CACHE"
if [ ! -f "$CACHE/$TARBALL" ] || ! echo "$SHA256  $CACHE/$TARBALL" | sha256sum -c --status; then
    ok=0
    for url in $URLS; do
        echo "fetching $url" >&2
        if command -v curl >/dev/null 2>&1; then
            curl -fsSL --retry 3 -o "$CACHE/$TARBALL.part" "$url" && ok=1
        else
            python3 -c "import sys,urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
                "$url" "$CACHE/$TARBALL.part" && ok=1
        fi
        [ $ok = 1 ] && break
    done
    [ $ok = 1 ] || { echo "error: could not download $TARBALL from the Debian archive" >&2; exit 1; }
    mv "$CACHE/$TARBALL.part" "$CACHE/$TARBALL"
fi
echo "$SHA256  $CACHE/$TARBALL" | sha256sum -c --status || {
    echo "error: $CACHE/$TARBALL does not match the pinned SHA-256 $SHA256" >&2; rm -f "$CACHE/$TARBALL"; exit 1; }
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
tar xzf "$CACHE/$TARBALL" -C "$DEST.tmp" --strip-components=1
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST" && touch "$DEST/.complete"
echo "mbedtls $VERSION unpacked in $DEST" >&2

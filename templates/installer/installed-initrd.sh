#!/bin/sh
# The installed system's initramfs, made at build time (natively fast) rather
# than on the target during the install (minutes on a slow machine): the same
# initramfs-tools configuration without live-boot's hooks. The installer puts
# it in /boot after removing live-boot (appliance/installer/target.py).
set -eu
out=/usr/lib/appliance/initrd
share=/usr/share/initramfs-tools
stash=$(mktemp -d)
restore() {
    for f in hooks/live hooks/kms scripts/live; do
        if [ -e "$stash/$(echo "$f" | tr / _)" ]; then
            mv "$stash/$(echo "$f" | tr / _)" "$share/$f"
        fi
    done
    rmdir "$stash"
}
trap restore EXIT
for f in hooks/live hooks/kms scripts/live; do
    if [ -e "$share/$f" ]; then
        mv "$share/$f" "$stash/$(echo "$f" | tr / _)"
    fi
done
mkdir -p "$out"
for kernel in /boot/vmlinuz-*; do
    version=${kernel#/boot/vmlinuz-}
    mkinitramfs -o "$out/initrd.img-$version" "$version"
done

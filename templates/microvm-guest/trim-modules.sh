#!/bin/sh
# The microVM guest's kernel modules, trimmed to what a microVM can use: it
# has virtio devices only (its storage drivers are in the initramfs, made
# before this). Drops sound and every driver for hardware a microVM cannot
# have (GPUs, media, USB, SCSI, wireless, physical NICs...): about 300 MB.
set -eu
for dir in /lib/modules/*/; do
    version=$(basename "$dir")
    rm -rf "$dir/kernel/sound"
    for d in "$dir"/kernel/drivers/*; do
        case "$(basename "$d")" in
            virtio|block|char|net|md|nvdimm) ;;
            *) rm -rf "$d" ;;
        esac
    done
    # of the NIC drivers, the virtual ones only
    for d in "$dir"/kernel/drivers/net/*; do
        case "$(basename "$d")" in
            *.ko|*.ko.xz|bonding|team|vxlan|ipvlan|wireguard) ;;
            *) rm -rf "$d" ;;
        esac
    done
    depmod "$version"
done

"""The installer: puts the host system onto a server's disk.

It runs on the live installer ISO (`appliance install`, started by
appliance-installer.service when the kernel command line says
`appliance.install`): find the answer (source.py), judge the hardware,
resolve the answer to one disk and NIC, lay the disk out (layout.py: sizes;
disk.py: GPT with pyparted, LVM, file systems), copy the live system's own
squashfs onto it, configure it (target.py), make it boot on BIOS and UEFI
(bootloader.py). Every step is logged to the console and to
/var/log/appliance-install.log on the target; run.py orders the steps.
"""

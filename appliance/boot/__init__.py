"""Boot-test harness: boots an image in QEMU (accel.py chooses KVM or TCG,
firmware.py finds SeaBIOS/OVMF, qemu.py builds the command line) and judges
the boot by the serial console (oracle.py) — `appliance boot-test`."""

"""appliance: builds and runs a bare-metal hypervisor host distribution."""

__version__ = "0.1.0"

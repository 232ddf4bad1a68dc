"""vfplugin: SR-IOV virtual functions for libvirt/QEMU domains.

This package must stay cheap to import: the qemu hook imports it on every lifecycle event of every domain.
Nothing here may import a third-party module.
"""

__version__ = "0.1.0"

REQUEST_NS = "urn:vfplugin:1"
ALIAS_PREFIX = "ua-vfplugin-"
DEFAULT_CONFIG = "/etc/vfplugin/vfplugin.yaml"
# Where libvirt runs hooks from (every executable in <kind>.d/, in name order) and vfplugin's name there; the
# packages, vfctl install-hook and doctor's checks all mean these.
HOOKS_DIR = "/etc/libvirt/hooks"
HOOK_NAME = "vfplugin"
QEMU_HOOKS = f"{HOOKS_DIR}/qemu.d"
NETWORK_HOOK = f"{HOOKS_DIR}/network.d/{HOOK_NAME}"

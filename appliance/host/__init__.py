"""Host management: VMs (our microVM monitor), containers (LXC), templates
and tasks. The CLI (`appliance vm|ct ...`) and the web UI call only this.

    from appliance.host import Host
    host = Host()                       # /etc/appliance, /var/lib/appliance
    task = host.create("ct", {"name": "web1", "template": "debian", "memory_mib": 512})
    host.start(task.guest)
"""

from appliance.host.manager import GuestStatus, Host, host_summary
from appliance.host.store import HostPaths
from appliance.host.tasks import Task

__all__ = ["GuestStatus", "Host", "HostPaths", "Task", "host_summary"]

"""The executors a configuration asks for (``--ray``, ``[cluster]``), for the front ends to hand to the
session runner: Ray client workers for load phases with ``cluster.ray``, Ray engine hosts with
``cluster.per_node`` or ``cluster.matrix``; this process's own executors otherwise. Ray itself is
imported only when an executor starts."""

from __future__ import annotations

from ttftui.cluster.clients import RayClients
from ttftui.cluster.engine_hosts import RayEngineHosts
from ttftui.core.config import Config
from ttftui.run.executors import Executors


def executors_for(config: Config) -> Executors:
    cc = config.cluster
    if not cc.ray:
        return Executors()
    return Executors(load=RayClients, hosts=RayEngineHosts if config.engine_hosts else None,
                     hosts_name="Ray engine hosts")

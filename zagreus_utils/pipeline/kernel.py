"""The Jupyter kernel papermill starts for a stage notebook.

jupyter_client starts a kernel over local TCP without transport encryption unless told otherwise,
and ipykernel (7.4+) then prints "Kernel is running over TCP without encryption" on every stage.
:class:`StageKernelManager` asks for what that warning recommends: CurveZMQ keys provisioned by the
kernel manager (``transport_encryption = "auto"``: used when the kernelspec declares support for
them, as ipykernel's does, and libzmq has CURVE). The runner passes it to papermill as nbclient's
``kernel_manager_class``.
"""

from __future__ import annotations

import zmq
from jupyter_client import AsyncKernelManager
from traitlets import default


class StageKernelManager(AsyncKernelManager):
    """nbclient's default kernel manager, with manager-provisioned CurveZMQ keys where possible."""

    @default("transport_encryption")
    def _transport_encryption_default(self) -> str:
        return "auto" if zmq.has("curve") else "disabled"

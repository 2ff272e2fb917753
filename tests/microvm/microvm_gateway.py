"""A real gateway whose executors are the microVM tier (the lead's CLI wiring aside).

Usage: ``python microvm_gateway.py PORT RUN_DIR``; the VMs' folders go in RUN_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path


def serve(port: int, run_dir: Path) -> None:
    import uvicorn

    from faas.config import Settings
    from faas.executors.base import Executor
    from faas.executors.microvm import (
        FirecrackerExecutor,
        MicroVMExecutor,
        MicroVMSettings,
        QemuExecutor,
    )
    from faas.gateway.app import create_app

    vm_settings = MicroVMSettings(run_dir=run_dir, boot_timeout_s=60.0)
    executors: dict[str, Executor] = {
        "microvm": MicroVMExecutor(vm_settings),
        "qemu": QemuExecutor(vm_settings),
        "firecracker": FirecrackerExecutor(vm_settings),
    }
    settings = Settings(port=port, default_executor="microvm", executors=tuple(executors))
    app = create_app(settings, executors)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))

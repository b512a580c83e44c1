"""Workers: Ray GPU actors, inference engines and NVML energy metering (issue 4)."""

from __future__ import annotations

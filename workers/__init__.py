"""Workers: Ray GPU actors, inference engines and NVML energy metering."""

from __future__ import annotations

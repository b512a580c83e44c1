"""Orchestrator: the Algorithm 1 campaign driver, its configuration, sampling and strategies."""

from __future__ import annotations

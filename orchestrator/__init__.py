"""Orchestrator: the command line and the Algorithm 1 campaign driver."""

from __future__ import annotations

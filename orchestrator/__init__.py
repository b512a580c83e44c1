"""Orchestrator: the command line and (from a later milestone) the Algorithm 1 campaign driver."""

from __future__ import annotations

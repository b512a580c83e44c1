"""What a closed engine left alive in this process, and what holds it.

An engine whose core ran in the worker's own process is freed only when nothing references it
any more. When its GPU memory does not come back, the question is which object still holds it:
these helpers list the largest CUDA tensors still alive and follow, for any object, the chain of
objects that refer to it (an owner's attribute, a container, a closure), up to a few links.
Walking the collector's objects costs seconds in a process that traced a model, so they are for
a release that already failed, not for every one.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterable
from types import FrameType
from typing import Any

#: Links followed from an object towards what holds it.
CHAIN_DEPTH = 6


def referrer_chain(obj: Any, depth: int = CHAIN_DEPTH, ignore: Iterable[Any] = ()) -> list[str]:
    """Type names along the first chain of objects that refer to ``obj``, nearest first.

    An instance's attribute shows as ``module.Owner.name``, a dict's entry as
    ``builtins.dict['key']``, a suspended or saved frame (of a traceback, a generator) as
    ``frame <function> (<file>:<line>)``; the frames of the calls under way now, this one's
    among them, are not holders and are skipped.

    Args:
        obj: The object still alive.
        depth: Links to follow at most.
        ignore: Objects (the caller's own containers) that refer to ``obj`` only to inspect it.
    """
    chain: list[str] = []
    skipped = {id(obj), *(id(o) for o in ignore)}
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        skipped.add(id(frame))
        frame = frame.f_back
    current = obj
    for _ in range(depth):
        referrers = [r for r in gc.get_referrers(current) if id(r) not in skipped]
        skipped.add(id(referrers))  # it holds the next link while the walk goes on
        if not referrers:
            break
        held, current = current, referrers[0]
        skipped.add(id(current))
        chain.append(_link(current, held))
    return chain


def _link(holder: Any, held: Any) -> str:
    """How ``holder`` refers to ``held``: an attribute, a key, a frame, or just its type."""
    if isinstance(holder, FrameType):
        code = holder.f_code
        return f"frame {code.co_qualname} ({code.co_filename}:{holder.f_lineno})"
    kind = f"{type(holder).__module__}.{type(holder).__qualname__}"
    if isinstance(holder, dict):
        key = next((k for k, v in holder.items() if v is held), None)
        return kind if key is None else f"{kind}[{key!r}]"
    try:
        attributes = vars(holder)
    except TypeError:  # no instance attributes (a tuple, a cell, a slotted object)
        return kind
    name = next((k for k, v in attributes.items() if v is held), None)
    return kind if name is None else f"{kind}.{name}"


def live_cuda_tensors(limit: int = 3, depth: int = CHAIN_DEPTH) -> dict[str, Any]:
    """Real CUDA tensors still alive here (largest first, with what holds them).

    The graphs torch.compile traced keep *fake* tensors (shapes and devices, no memory) as their
    nodes' example values: on an H200, 3,808 of them after a closed Qwen2-0.5B engine, which
    would hide the real ones from a listing by size; they are counted apart. Empty where torch
    never used CUDA in this process.

    Args:
        limit: Tensors listed with their holders.
        depth: Links followed from each towards its holder.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return {}
    from torch._subclasses.fake_tensor import FakeTensor

    tensors, fake = [], 0
    for obj in gc.get_objects():
        try:
            if isinstance(obj, FakeTensor):
                fake += 1
            elif isinstance(obj, torch.Tensor) and obj.is_cuda:
                tensors.append(obj)
        except Exception:  # objects whose isinstance check fails are no tensors
            continue
    sizes = [int(t.untyped_storage().nbytes()) for t in tensors]
    order = sorted(range(len(tensors)), key=lambda i: sizes[i], reverse=True)
    return {
        "count": len(tensors),
        "fake_count": fake,
        "storage_mib": sum(sizes) / 2**20,
        "largest": [
            {
                "shape": [int(d) for d in tensors[i].shape],
                "dtype": str(tensors[i].dtype),
                "mib": sizes[i] / 2**20,
                "held_by": referrer_chain(tensors[i], depth, ignore=(tensors,)),
            }
            for i in order[:limit]
        ],
    }

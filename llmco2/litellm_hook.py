"""Predicted energy and CO2eq of LiteLLM completions: a LiteLLM callback.

    import litellm
    from llmco2.hooks import Deployment
    from llmco2.litellm_hook import Llmco2Callback

    callback = Llmco2Callback(Deployment("llama3.1-8b", gpu="H200", region="FRA"))
    litellm.callbacks = [callback]
    response = await litellm.acompletion(model="hosted_vllm/llama", api_base=..., messages=[...])
    response.llmco2.total_j      # an asynchronous completion carries its Impact when it returns
    callback.totals.total_j      # every completion, synchronous ones included, adds to the totals

A router or proxy serving several models gets a mapping from model name (LiteLLM's model group,
or the model a call asks for, with or without its ``provider/`` prefix; ``"*"`` for any other) to
:class:`Deployment`; completions of models it does not name are counted as unpriced. Each
completion is priced from its own token counts (``usage``), as the OpenAI-client hook
(:mod:`llmco2.hooks`) prices them.
Behind the LiteLLM proxy (``litellm_settings: callbacks: [your_module.callback]``) responses also
carry the headers ``x-llmco2-energy-j`` and, with a carbon intensity, ``x-llmco2-co2-g``.
LiteLLM calls a synchronous completion's callbacks from its logging thread after the completion
returns: there, read the totals or pass ``on_impact``.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llmco2.errors import Llmco2Error, MissingDependencyError
from llmco2.hooks import Deployment, Impact

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError as exc:
    raise MissingDependencyError.for_module(exc.name or "litellm", "the LiteLLM callback") from None

__all__ = ["Llmco2Callback", "Totals"]

#: Completions remembered so that LiteLLM's two success events of one are counted once.
_REMEMBERED_CALLS = 10_000


@dataclass(frozen=True)
class Totals:
    """What the completions seen so far add up to.

    Attributes:
        requests: Completions priced.
        unpriced: Completions without usage, of a model without a deployment, or refused by the
            predictor.
        total_j: Their predicted energy (J).
        operational_g: Their operational CO2eq (g; 0 without a carbon intensity).
        embodied_g: Their embodied CO2eq (g).
    """

    requests: int = 0
    unpriced: int = 0
    total_j: float = 0.0
    operational_g: float = 0.0
    embodied_g: float = 0.0


class Llmco2Callback(CustomLogger):
    """A LiteLLM callback that prices every successful completion (see the module doc).

    Args:
        deployment: What serves the completions, or a mapping of model names to deployments.
        on_impact: Called with each completion's :class:`Impact` and LiteLLM's call details.
    """

    def __init__(
        self,
        deployment: Deployment | Mapping[str, Deployment],
        on_impact: Callable[[Impact, dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self._deployments = (
            {"*": deployment} if isinstance(deployment, Deployment) else dict(deployment)
        )
        self._on_impact = on_impact
        self._lock = threading.Lock()
        self._totals = Totals()
        self._counted: OrderedDict[str, None] = OrderedDict()

    @property
    def totals(self) -> Totals:
        """The totals so far."""
        with self._lock:
            return self._totals

    def deployment_for(self, details: Mapping[str, Any]) -> Deployment | None:
        """The deployment of a call (LiteLLM's call details or request data).

        The mapping's entry for the call's model group, else for the model it asks for (with or
        without its ``provider/`` prefix), else its ``"*"`` entry; None without any.
        """
        params = details.get("litellm_params") or {}
        metadata = {**(params.get("metadata") or {}), **(details.get("metadata") or {})}
        for name in (metadata.get("model_group"), details.get("model")):
            if not name:
                continue
            for key in (str(name), str(name).split("/", 1)[-1]):
                if key in self._deployments:
                    return self._deployments[key]
        return self._deployments.get("*")

    def impact_of(self, details: Mapping[str, Any], response: Any) -> Impact | None:
        """The predicted cost of a completion, None where it cannot be priced."""
        known = getattr(response, "llmco2", None)
        if isinstance(known, Impact):
            return known
        usage = getattr(response, "usage", None)
        prompt = getattr(usage, "prompt_tokens", None)
        deployment = self.deployment_for(details)
        if prompt is None or deployment is None:
            return None
        try:
            return deployment.impact(int(prompt), int(getattr(usage, "completion_tokens", 0) or 0))
        except Llmco2Error:
            return None

    def _annotate(self, details: Mapping[str, Any], response: Any) -> Impact | None:
        impact = self.impact_of(details, response)
        if impact is not None:
            # A response type that takes no new attributes: the totals still count it.
            with contextlib.suppress(AttributeError, TypeError, ValueError):
                response.llmco2 = impact
        return impact

    def _count(self, details: dict[str, Any], response: Any) -> None:
        call = str(details.get("litellm_call_id") or id(response))
        with self._lock:
            if call in self._counted:
                return  # LiteLLM reports an asynchronous completion to both success events
            self._counted[call] = None
            if len(self._counted) > _REMEMBERED_CALLS:
                self._counted.popitem(last=False)
        impact = self._annotate(details, response)
        with self._lock:
            t = self._totals
            if impact is None:
                self._totals = Totals(
                    t.requests, t.unpriced + 1, t.total_j, t.operational_g, t.embodied_g
                )
                return
            self._totals = Totals(
                t.requests + 1, t.unpriced, t.total_j + impact.total_j,
                t.operational_g + (impact.operational_g or 0.0), t.embodied_g + impact.embodied_g,
            )  # fmt: skip
        if self._on_impact is not None:
            self._on_impact(impact, details)

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Count a completion (LiteLLM's logging thread, after it returned)."""
        self._count(kwargs, response_obj)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Count an asynchronous completion."""
        self._count(kwargs, response_obj)

    async def async_post_call_success_deployment_hook(
        self, request_data: dict[str, Any], response: Any, call_type: Any
    ) -> Any:
        """Attach the completion's :class:`Impact` before an asynchronous call returns it."""
        self._annotate(request_data, response)
        return response

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        """The proxy's response headers with the completion's predicted energy and CO2eq."""
        if response is None:
            return None
        impact = self.impact_of(data, response)
        if impact is None:
            return None
        headers = {"x-llmco2-energy-j": f"{impact.total_j:.6g}"}
        if impact.operational_g is not None:
            headers["x-llmco2-co2-g"] = f"{impact.operational_g + impact.embodied_g:.6g}"
        return headers

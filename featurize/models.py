"""The built-in catalog of LLM architectures and name resolution (catalog id, alias or path)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from featurize.architecture import Architecture
from featurize.hf_config import architecture_from_hf_config, context_window_of, read_hf_config
from llmco2.errors import UnknownModelError


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """A catalog entry: the architecture plus how users may refer to it and where it came from."""

    id: str
    aliases: tuple[str, ...]
    architecture: Architecture
    source: str
    #: Longest prompt + output of a request (the config's ``max_position_embeddings``).
    context_window: int | None = None


@cache
def catalog_models() -> tuple[CatalogModel, ...]:
    """The catalog: the 17 LLMs of the LLMCO2 paper, then the models added since, in order."""
    raw = json.loads(resources.files("featurize").joinpath("data/llms.json").read_text("utf-8"))
    entries = []
    for item in raw["models"]:
        fields = {
            k: v for k, v in item.items() if k not in ("id", "aliases", "source", "context_window")
        }
        entries.append(
            CatalogModel(
                id=item["id"],
                aliases=tuple(item["aliases"]),
                architecture=Architecture(name=item["id"], **fields),
                source=item["source"],
                context_window=item.get("context_window"),
            )
        )
    return tuple(entries)


@cache
def _index() -> dict[str, CatalogModel]:
    index: dict[str, CatalogModel] = {}
    for entry in catalog_models():
        for key in (entry.id, entry.id.split("/")[-1], *entry.aliases):
            index[key.lower()] = entry
    return index


def catalog_names() -> list[str]:
    """Every id and alias a user can type."""
    names: list[str] = []
    for entry in catalog_models():
        names.extend((entry.id, *entry.aliases))
    return names


def get_catalog_model(name: str) -> CatalogModel:
    """Look a model up by catalog id or alias, case-insensitively.

    Raises:
        UnknownModelError: With the closest known names, when nothing matches.
    """
    try:
        return _index()[name.strip().lower()]
    except KeyError:
        raise UnknownModelError(name, catalog_names()) from None


def resolve_architecture(name_or_path: str) -> Architecture:
    """The architecture a user means: a catalog id/alias, or a ``config.json`` file or directory.

    A name that is in the catalog wins over a same-named relative path; anything that looks like a
    path (exists, contains a separator or ends in ``.json``) is read as a Hugging Face config.

    Raises:
        UnknownModelError: Neither a catalog name nor an existing path.
        ConfigFileError: A path that cannot be read as a config.
        UnsupportedArchitectureError: A config of an unsupported family.
    """
    return resolve_model(name_or_path)[0]


def resolve_model(name_or_path: str) -> tuple[Architecture, int | None]:
    """The architecture a user means and its context window, reading a config file once.

    The context window is the longest prompt + output the model takes (its config's
    ``max_position_embeddings``), None where the config sets no limit.

    Raises:
        UnknownModelError, ConfigFileError, UnsupportedArchitectureError: As
            :func:`resolve_architecture`.
    """
    key = name_or_path.strip().lower()
    if key in _index():
        entry = _index()[key]
        return entry.architecture, entry.context_window
    path = _config_path(name_or_path)
    config = read_hf_config(path)
    return architecture_from_hf_config(config, name=str(path)), context_window_of(config)


def _config_path(name_or_path: str) -> Path:
    """The config file a name that is not in the catalog means.

    Raises:
        UnknownModelError: It does not look like a path either.
    """
    path = Path(name_or_path)
    if path.exists() or name_or_path.endswith(".json"):
        return path
    if "/" in name_or_path and name_or_path.startswith((".", "/", "~")):
        return path
    raise UnknownModelError(name_or_path, catalog_names())


def context_window(name_or_path: str) -> int | None:
    """The longest prompt + output the model takes (see :func:`resolve_model`).

    Raises:
        UnknownModelError, ConfigFileError, UnsupportedArchitectureError: As
            :func:`resolve_architecture`.
    """
    return resolve_model(name_or_path)[1]

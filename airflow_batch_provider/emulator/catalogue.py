"""The models the emulator offers, per batch endpoint, and their ``/v1/models`` objects.

A batch naming a model its endpoint does not offer fails at validation with
``model_not_found``, as on the live API (the rule itself lives in
:func:`airflow_batch_provider.jsonl.inspect_file`; this module only says which models exist).
The catalogue holds current OpenAI models of each endpoint; ``--model NAME`` adds names (offered
on every endpoint: fine-tuned models, Azure deployment names, a local server's models), and
``--any-model`` turns the check off. Models named ``emulator-fail-<status>`` are always offered:
they are the emulator's own way to make every request of a batch fail.

``created`` values are approximate release dates (epoch seconds), not the live API's exact ones.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

from airflow_batch_provider.emulator.checks import FAIL_MODEL_PREFIX
from airflow_batch_provider.emulator.documents import Document

ADDED_MODEL_OWNER = "org-emulator"
"""``owned_by`` of the models added with ``--model``, as the live API names an organization's own."""
ADDED_MODEL_CREATED = 1_735_689_600
"""``created`` of the models added with ``--model`` (2025-01-01)."""


@dataclass(frozen=True)
class Model:
    """One model as ``GET /v1/models`` lists it."""

    id: str
    created: int
    owned_by: str = "system"

    def document(self) -> Document:
        """The model object: ``{"id", "object": "model", "created", "owned_by"}``."""
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": self.owned_by}


_CHAT = (
    Model("gpt-5.1", 1_762_800_000),
    Model("gpt-5", 1_754_425_777),
    Model("gpt-5-2025-08-07", 1_754_425_867),
    Model("gpt-5-mini", 1_754_425_928),
    Model("gpt-5-mini-2025-08-07", 1_754_425_867),
    Model("gpt-5-nano", 1_754_426_384),
    Model("gpt-5-nano-2025-08-07", 1_754_426_303),
    Model("gpt-4.1", 1_744_316_542),
    Model("gpt-4.1-2025-04-14", 1_744_315_746),
    Model("gpt-4.1-mini", 1_744_318_173),
    Model("gpt-4.1-mini-2025-04-14", 1_744_317_547),
    Model("gpt-4.1-nano", 1_744_321_707),
    Model("gpt-4.1-nano-2025-04-14", 1_744_321_025),
    Model("gpt-4o", 1_715_367_049),
    Model("gpt-4o-2024-05-13", 1_715_368_132),
    Model("gpt-4o-2024-08-06", 1_722_814_719),
    Model("gpt-4o-2024-11-20", 1_739_331_543),
    Model("gpt-4o-mini", 1_721_172_741),
    Model("gpt-4o-mini-2024-07-18", 1_721_172_717),
    Model("gpt-4-turbo", 1_712_361_441),
    Model("gpt-4", 1_687_882_411, "openai"),
    Model("gpt-3.5-turbo", 1_677_610_602, "openai"),
    Model("gpt-3.5-turbo-0125", 1_706_048_358),
    Model("o4-mini", 1_744_225_351),
    Model("o4-mini-2025-04-16", 1_744_133_506),
    Model("o3", 1_744_225_308),
    Model("o3-2025-04-16", 1_744_133_301),
    Model("o3-mini", 1_737_146_383),
    Model("o3-mini-2025-01-31", 1_738_010_200),
    Model("o1", 1_734_375_816),
    Model("o1-2024-12-17", 1_734_326_976),
)
_RESPONSES_ONLY = (
    Model("gpt-5-pro", 1_759_469_707),
    Model("o3-pro", 1_748_475_349),
    Model("o1-pro", 1_742_251_791),
)
_EMBEDDINGS = (
    Model("text-embedding-3-small", 1_705_948_997),
    Model("text-embedding-3-large", 1_705_953_180),
    Model("text-embedding-ada-002", 1_671_217_299, "openai-internal"),
)
_COMPLETIONS = (
    Model("gpt-3.5-turbo-instruct", 1_692_901_427),
    Model("davinci-002", 1_692_634_301),
    Model("babbage-002", 1_692_634_615),
)
_MODERATIONS = (
    Model("omni-moderation-latest", 1_731_689_265),
    Model("omni-moderation-2024-09-26", 1_732_734_466),
)

MODELS_BY_ENDPOINT: dict[str, tuple[Model, ...]] = {
    "/v1/chat/completions": _CHAT,
    "/v1/responses": _CHAT + _RESPONSES_ONLY,
    "/v1/embeddings": _EMBEDDINGS,
    "/v1/completions": _COMPLETIONS,
    "/v1/moderations": _MODERATIONS,
}
"""The models each batch endpoint offers (besides the ones added with ``--model``)."""


class _Offered(Container[str]):
    """The model names one endpoint accepts: its own, the added ones, and ``emulator-fail-*``."""

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._names or name.startswith(FAIL_MODEL_PREFIX))


class ModelCatalogue:
    """The models one emulator offers.

    :param added: more model names, offered on every endpoint (``--model``); default none.
    :param check: refuse batches naming a model their endpoint does not offer; default True
        (False: ``--any-model``, and the upstream mode, where the upstream server decides).
    """

    def __init__(self, added: Iterable[str] = (), *, check: bool = True) -> None:
        self.check = check
        own = {model.id: model for models in MODELS_BY_ENDPOINT.values() for model in models}
        extra = [Model(name, ADDED_MODEL_CREATED, ADDED_MODEL_OWNER) for name in added if name not in own]
        self._models: dict[str, Model] = {**own, **{model.id: model for model in extra}}
        extra_names = frozenset(model.id for model in extra)
        self._offered = {
            endpoint: _Offered(frozenset(model.id for model in models) | extra_names)
            for endpoint, models in MODELS_BY_ENDPOINT.items()
        }

    def offered(self, endpoint: str) -> Container[str] | None:
        """The models a batch to ``endpoint`` may name, or None when models are not checked."""
        if not self.check:
            return None
        return self._offered.get(endpoint)

    def __iter__(self) -> Iterator[Model]:
        return iter(self._models.values())

    def get(self, model_id: str) -> Model | None:
        """The model called ``model_id``, or None."""
        return self._models.get(model_id)

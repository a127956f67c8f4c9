"""Domain errors carry meaning only; the edge maps them to HTTP status codes in one table."""

from __future__ import annotations

import inspect

from wahub.domain import errors
from wahub.edge.status import STATUS, status_of
from wahub.engines.cloud.errors import WebhookRejected


def _refusals() -> list[type[errors.ApiError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.ApiError)]


def test_no_domain_error_knows_an_http_status() -> None:
    for cls in inspect.getmembers(errors, inspect.isclass):
        assert "status_code" not in vars(cls[1]), cls[0]


def test_every_refusal_has_its_status_from_the_one_table() -> None:
    expected = {"ApiError": 400, "InvalidInput": 400, "Unauthenticated": 401, "Forbidden": 403, "NotFound": 404,
                "Conflict": 409, "Unprocessable": 422, "QueueFull": 429, "NotSupported": 501, "ServiceUnavailable": 503,
                "ShuttingDown": 503}
    assert {c.__name__: status_of(c("x") if c not in (errors.QueueFull, errors.ShuttingDown)
                                  else c("x", retry_after_s=1)) for c in _refusals()} == expected
    assert set(STATUS) <= set(_refusals())
    assert status_of(WebhookRejected("forged signature")) == 403  # an engine's refusal, by its meaning


def test_the_documented_state_names_are_the_lifecycle_states() -> None:
    from typing import get_args

    from wahub.api.answers import ExternalStatus, StateName
    from wahub.domain.lifecycle import State

    assert set(get_args(StateName)) == {s.value for s in State}
    assert set(get_args(ExternalStatus)) == {s.value for s in State} | {"qr"}

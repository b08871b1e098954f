"""errors.py: every client-visible failure has exactly one HTTP status.

The classes are discovered with inspect, so a new FwdproxyError subclass without a row
here makes `test_every_error_class_has_a_row` fail.
"""

from __future__ import annotations

import inspect

import pytest

from fwdproxy import errors
from fwdproxy.errors import FwdproxyError

STATUSES: dict[type[FwdproxyError], int] = {
    errors.BadRequest: 400,
    errors.Forbidden: 403,
    errors.BlockedRedirect: 302,  # a denial sent to the policy's own page
    errors.NotFound: 404,
    errors.MethodNotAllowed: 405,
    errors.AuthRequired: 407,
    errors.LoginRequired: 401,
    errors.RequestTimeout: 408,
    errors.BodyTooLarge: 413,
    errors.HeadTooLarge: 431,
    errors.BadGateway: 502,
    errors.ServiceUnavailable: 503,
    errors.GatewayTimeout: 504,
    errors.LoopDetected: 508,
}


def defined_error_classes() -> set[type[FwdproxyError]]:
    return {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, FwdproxyError)
        and cls is not FwdproxyError
        and cls.__module__ == errors.__name__
    }


def make(cls: type[FwdproxyError], detail: str, host: str | None = None) -> FwdproxyError:
    if cls is errors.Forbidden:
        return errors.Forbidden(detail, source="config:clients", host=host)
    if cls is errors.BlockedRedirect:
        return errors.BlockedRedirect(detail, location="http://intranet.example/blocked",
                                      source="policy.yaml:3", host=host)
    if cls in (errors.AuthRequired, errors.LoginRequired):
        return cls(detail, realm="office", host=host)  # type: ignore[call-arg]
    return cls(detail, host=host)


def test_every_error_class_has_a_row() -> None:
    assert defined_error_classes() == set(STATUSES)


@pytest.mark.parametrize(
    ("cls", "status"),
    [pytest.param(cls, status, id=f"{cls.__name__}-{status}") for cls, status in STATUSES.items()],
)
def test_status(cls: type[FwdproxyError], status: int) -> None:
    error = make(cls, "what went wrong", host="example.com:443")
    assert cls.status == status
    assert error.status == status
    assert isinstance(error, FwdproxyError)
    assert (error.detail, error.host, str(error)) == (
        "what went wrong", "example.com:443", "what went wrong"
    )
    assert error.title and error.title != FwdproxyError.title
    assert error.verdict


def test_forbidden_carries_its_source() -> None:
    error = errors.Forbidden("no", source="deny/ads.txt:12")
    assert (error.source, error.host) == ("deny/ads.txt:12", None)


def test_base_class_is_a_500() -> None:
    assert FwdproxyError("x").status == 500


@pytest.mark.parametrize("cls", [errors.ConnectionLost, errors.ConfigError])
def test_non_client_errors_are_not_fwdproxy_errors(cls: type[Exception]) -> None:
    assert not issubclass(cls, FwdproxyError)

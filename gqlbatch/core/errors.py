"""Error codes and the exception hierarchy. Imports nothing from gqlbatch but `types`.

    GqlbatchError
     ├── BatchRejected        the whole batch is refused; nothing ran. Carries every Problem.
     └── ItemError            one item failed; becomes a value in that item's slot
          ├── UpstreamError
          │    ├── UpstreamUnreachable   UPSTREAM_UNREACHABLE
          │    ├── UpstreamTimeout       UPSTREAM_TIMEOUT
          │    ├── UpstreamBadResponse   UPSTREAM_BAD_RESPONSE
          │    └── BatchTooLarge         BATCH_TOO_LARGE (the request's byte budget ran out)
          ├── ReferenceNotFound          REFERENCE_NOT_FOUND
          ├── ForbiddenValue             FORBIDDEN_TARGET (a substituted value that would escape)
          ├── CallTooLarge               REQUEST_TOO_LARGE (one rendered call, before sending)
          └── BatchTooLarge              BATCH_TOO_LARGE (the request's byte budgets ran out)
    ConfigError               bad settings at start-up; the CLI prints it and exits 2

Rejection codes are carried by `Problem` values rather than one class each, because a rejection
lists every problem at once. The executor produces the remaining item codes (UPSTREAM_STATUS,
FAILED_DEPENDENCY, TIMEOUT, CANCELLED) as results, never as exceptions.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from gqlbatch.core.types import RequestId

__all__ = [
    "REJECTION_CODES",
    "BatchRejected",
    "BatchTooLarge",
    "CallTooLarge",
    "ConfigError",
    "ErrorCode",
    "ForbiddenValue",
    "GqlbatchError",
    "ItemError",
    "Masked",
    "Problem",
    "ReferenceNotFound",
    "StoreUnavailable",
    "UpstreamBadResponse",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "mask_internal",
]


class ErrorCode(StrEnum):
    """Every machine-readable error gqlbatch reports; one enum in the schema and the README."""

    # Rejections: the batch as a whole is invalid and nothing ran.
    INVALID_INPUT = "INVALID_INPUT"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    DUPLICATE_REQUEST_ID = "DUPLICATE_REQUEST_ID"
    UNKNOWN_DEPENDENCY = "UNKNOWN_DEPENDENCY"
    DEPENDENCY_CYCLE = "DEPENDENCY_CYCLE"
    INVALID_REFERENCE = "INVALID_REFERENCE"
    UNKNOWN_UPSTREAM = "UNKNOWN_UPSTREAM"
    FORBIDDEN_TARGET = "FORBIDDEN_TARGET"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    NESTED_BATCH = "NESTED_BATCH"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    FORBIDDEN_ORIGIN = "FORBIDDEN_ORIGIN"
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
    PERSISTED_QUERY_NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
    UNKNOWN_ROUTE = "UNKNOWN_ROUTE"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    # Per item: a value in that item's slot; its siblings carry on.
    UPSTREAM_STATUS = "UPSTREAM_STATUS"
    UPSTREAM_UNREACHABLE = "UPSTREAM_UNREACHABLE"
    UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
    UPSTREAM_BAD_RESPONSE = "UPSTREAM_BAD_RESPONSE"
    REFERENCE_NOT_FOUND = "REFERENCE_NOT_FOUND"
    FAILED_DEPENDENCY = "FAILED_DEPENDENCY"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    # Not about the batch: an internal error, masked for the client.
    INTERNAL_ERROR = "INTERNAL_ERROR"


REJECTION_CODES = frozenset(
    {
        ErrorCode.INVALID_INPUT,
        ErrorCode.BATCH_TOO_LARGE,
        ErrorCode.DUPLICATE_REQUEST_ID,
        ErrorCode.UNKNOWN_DEPENDENCY,
        ErrorCode.DEPENDENCY_CYCLE,
        ErrorCode.INVALID_REFERENCE,
        ErrorCode.UNKNOWN_UPSTREAM,
        ErrorCode.FORBIDDEN_TARGET,
        ErrorCode.METHOD_NOT_ALLOWED,
        ErrorCode.NESTED_BATCH,
        ErrorCode.TOO_MANY_REQUESTS,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ErrorCode.REQUEST_TOO_LARGE,
        ErrorCode.QUERY_TOO_COMPLEX,
        ErrorCode.REQUEST_TIMEOUT,
        ErrorCode.JOB_NOT_FOUND,
        ErrorCode.FORBIDDEN_ORIGIN,
        ErrorCode.PERSISTED_QUERY_NOT_FOUND,
        ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED,
        ErrorCode.PERSISTED_QUERY_NOT_IN_LIST,
        ErrorCode.UNKNOWN_ROUTE,
        ErrorCode.STORE_UNAVAILABLE,
    }
)


class GqlbatchError(Exception):
    """Root of gqlbatch's own errors: `except GqlbatchError` catches ours and none of theirs."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a batch was rejected: which item, which field, and why."""

    code: ErrorCode
    message: str
    request_id: RequestId | None = None
    index: int | None = None
    field: str | None = None

    def to_json(self) -> dict[str, object]:
        """The problem as both doors report it, in `extensions.problems` or a 400 body."""
        return {
            "requestId": self.request_id,
            "index": self.index,
            "field": self.field,
            "code": self.code.value,
            "message": self.message,
        }

    def __str__(self) -> str:
        where = f"item {self.index}" if self.index is not None else "batch"
        if self.request_id is not None:
            where += f" ('{self.request_id}')"
        if self.field:
            where += f" {self.field}"
        return f"{where}: {self.message}"


class BatchRejected(GqlbatchError):
    """The batch is invalid as a whole; nothing was sent upstream."""

    def __init__(
        self, problems: list[Problem] | tuple[Problem, ...], *, retry_after_s: int | None = None
    ) -> None:
        if not problems:
            raise ValueError("BatchRejected needs at least one problem")
        self.problems = tuple(problems)
        self.retry_after_s = retry_after_s
        """Set for TOO_MANY_REQUESTS: when the same batch may be sent again."""
        super().__init__(self._summary())

    @property
    def code(self) -> ErrorCode:
        """The shared code when every problem has one code, else INVALID_INPUT."""
        codes = {p.code for p in self.problems}
        return codes.pop() if len(codes) == 1 else ErrorCode.INVALID_INPUT

    def _summary(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        return f"batch rejected, nothing was run ({count} {noun}): " + "; ".join(
            str(p) for p in self.problems
        )

    def __repr__(self) -> str:
        return f"BatchRejected(problems={self.problems!r})"


class StoreUnavailable(BatchRejected):
    """The shared store (Redis) did not answer before anything was sent upstream: the batch
    is refused whole, STORE_UNAVAILABLE, and may be sent again once it answers."""

    def __init__(self, why: str, *, retry_after_s: int = 1) -> None:
        message = (
            f"the shared store did not answer ({why}); nothing was run. Send it again after "
            f"{retry_after_s} s"
        )
        super().__init__(
            [Problem(ErrorCode.STORE_UNAVAILABLE, message)], retry_after_s=retry_after_s
        )


class ItemError(GqlbatchError):
    """One item failed; the executor turns it into a value in that item's slot."""

    code: ClassVar[ErrorCode]

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class UpstreamError(ItemError):
    """The upstream call could not produce a usable response."""

    attempts: int = 1
    """How many attempts were made before giving up; set by the retry loop."""


class UpstreamUnreachable(UpstreamError):
    """The upstream refused the connection, reset it, or could not be resolved."""

    code = ErrorCode.UPSTREAM_UNREACHABLE


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the item's timeout."""

    code = ErrorCode.UPSTREAM_TIMEOUT


class UpstreamBadResponse(UpstreamError):
    """The upstream answered with a body we cannot use (invalid JSON, over the size cap)."""

    code = ErrorCode.UPSTREAM_BAD_RESPONSE


class BatchTooLarge(UpstreamError):
    """The request's bytes ran out: its rendered calls would pass max_rendered_batch_bytes
    (nothing is sent; `attempts` is 0), or its upstream bodies passed
    max_batch_response_bytes while this one was read (its body is not kept)."""

    code = ErrorCode.BATCH_TOO_LARGE


class ReferenceNotFound(ItemError):
    """A placeholder's selector matched nothing in the referenced result."""

    code = ErrorCode.REFERENCE_NOT_FOUND


class BinaryInText(ItemError):
    """A placeholder puts a binary answer (not JSON, not text) anywhere but a whole body."""

    code = ErrorCode.INVALID_REFERENCE


class ForbiddenValue(ItemError):
    """A substituted value would change the target (a dot segment, CR/LF in a header)."""

    code = ErrorCode.FORBIDDEN_TARGET


class CallTooLarge(ItemError):
    """One call, with its placeholders substituted, is over max_rendered_call_bytes."""

    code = ErrorCode.REQUEST_TOO_LARGE


@dataclass(frozen=True, slots=True)
class Masked:
    """An internal error as a client sees it: an id, and a sentence that says to quote it."""

    error_id: str
    message: str


def mask_internal(exc: BaseException | None, where: str) -> Masked:
    """Log *exc* with its traceback under a new id, and return what the client is shown
    instead: every door and every item masks a bug this one way (DESIGN §8)."""
    error_id = uuid.uuid4().hex[:12]
    _errors_log.error("internal error %s %s", error_id, where, exc_info=exc)
    return Masked(error_id, f"Internal error. Quote id {error_id} to find it in the server logs.")


_errors_log = logging.getLogger("gqlbatch.errors")


class ConfigError(GqlbatchError, ValueError):
    """The settings are invalid; raised at start-up, before anything is served."""

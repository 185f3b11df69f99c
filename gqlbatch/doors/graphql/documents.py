"""GraphQL documents, parsed once and checked once (DESIGN §9): the limits a document is held
to, our linear checks of its shape before graphql-core's rules, the trusted-documents list,
and the time a request may spend on all of it. Strawberry's extension (`doors.graphql.extensions`)
calls these on every operation; they read its ExecutionContext and nothing else of it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode, GraphQLError, parse

from gqlbatch.core.budget import RequestBudget
from gqlbatch.core.errors import ErrorCode
from gqlbatch.core.kept import Kept
from gqlbatch.doors.graphql.query_shape import document_problems
from gqlbatch.execution.context import BatchContext

if TYPE_CHECKING:  # the operation these checks are made for; Strawberry is the extension's
    from strawberry.types import ExecutionContext

__all__ = [
    "CACHE_CHARS",
    "CACHE_SIZE",
    "LIBRARY_LIMITS",
    "VALIDATION_BUDGET",
    "CheckedDocuments",
    "KnownErrors",
    "QueryLimits",
    "ShapeChecks",
]

CACHE_SIZE = 256
"""Documents kept parsed and validated (LRU): clients send a few documents, varying variables."""
CACHE_CHARS = 256 * 1024
"""... and at most this many characters of their texts, for each thing kept of them (the parsed
documents, their shape problems, their validation errors, their compiled operations).

A parsed document weighs about 70 times its text (graphql-core 3.3: a document of 5,000
tokens, 28 KB, is 1.9 MB parsed), and errors and compiled operations hold its nodes: 256
documents at the limits kept 0.5 GB for each, for as long as the process ran (issue 24).
A screen's documents are 1 to 4 KiB: 64 to 256 of them fit, and what is kept weighs about
18 MiB at most."""

# graphql-core's own limits give no structured signal (its parser raises a plain syntax error,
# and the validation abort's class is not exported), so they are known by their messages:
# the token limit, documents and values nested past what it can walk, and its validation
# budget (checked with graphql-core 3.3.2; tests/test_limits.py and test_query_shape.py pin
# each). Our own checks (query_shape.py) set the code when they make the error.
LIBRARY_LIMITS = re.compile(
    r"Document contains more than \d+ tokens"
    r"|nested too deeply"
    r"|Validation aborted"
    r"|error limit reached"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryLimits:
    """How big a GraphQL document may be (DESIGN §9)."""

    max_depth: int = 12
    max_aliases: int = 50
    max_tokens: int = 5_000
    introspection: bool = True
    """False refuses `__schema` and `__type` (DESIGN §9: off for production if wanted)."""
    max_select_paths: int = 64
    """Paths one `body(select:)` may name."""


VALIDATION_BUDGET = 20_000
"""Work graphql-core's OverlappingFieldsCanBeMergedRule may spend on one document before it
aborts validation ("Validation aborted.", QUERY_TOO_COMPLEX). Its default, 500,000, took
about 1 s on the CI machine; a document of 40 fragments spread into 32 places and 40
aliased items needs 14,448. Set through the module attribute graphql-core documents for it."""


class KnownErrors:
    """Errors found in a document, remembered by a key made of its text (LRU, like the parse
    cache): a screen sends the same document again and again."""

    def __init__(self) -> None:
        self._known: Kept[Hashable, list[GraphQLError]] = Kept(CACHE_SIZE, max_weight=CACHE_CHARS)

    def get(
        self, key: Hashable | None, text: str, find: Callable[[], list[GraphQLError]]
    ) -> list[GraphQLError]:
        """The errors *find* gives, kept under *key* (None: never kept) as heavy as *text*."""
        found = find() if key is None else self._known.recall(key, find, len(text))
        return list(found)  # a copy: the request's error list is its own


class ShapeChecks:
    """`query_shape.document_problems` under one schema's limits, remembered per document
    text: the walk need not be repeated."""

    def __init__(self, limits: QueryLimits) -> None:
        self._limits = limits
        self._known = KnownErrors()

    def problems(self, query: str | None, document: DocumentNode) -> list[GraphQLError]:
        """The shape problems of *document*, whose text is *query*."""
        limits = self._limits
        return self._known.get(
            query,
            query or "",
            lambda: document_problems(
                document, max_depth=limits.max_depth, max_aliases=limits.max_aliases
            ),
        )


_PARSED: Kept[tuple[str, tuple[tuple[str, Any], ...]], DocumentNode] = Kept(
    CACHE_SIZE, max_weight=CACHE_CHARS
)
"""graphql-core's parses, by document text and parse options (the token limit)."""


def _parsed(query: str, options: Mapping[str, Any]) -> DocumentNode:
    """graphql-core's parse of *query*, with its tokens unlinked from one another.

    The lexer links each token to the one before and after it, and keeps them so: every
    parsed document was a reference cycle of all its tokens, freed only by a full collection,
    which a server tuned for throughput runs rarely (issue 24: 1,500 new documents left
    147,000 tokens and 60 MiB behind). Nothing reads the links once the document is parsed
    (locations are computed from each node's `loc.start` and source); unlinked, the tokens no
    node's `loc` starts or ends at are freed at once, and the rest with their document.
    """
    document = parse(query, **options)
    token = document.loc.start_token if document.loc is not None else None
    while token is not None:
        following = token.next
        token.prev = token.next = None
        token = following
    return document


_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


def _stand_in(operation_name: str | None) -> DocumentNode:
    """The document an operation refused while parsing is given, so that Strawberry finds the
    operation it asked for (by name, when it gave one); it is never executed."""
    if operation_name is None or not _NAME.fullmatch(operation_name):
        return parse("{ __typename }")
    return parse(f"query {operation_name} {{ __typename }}")


_NOT_TRUSTED = GraphQLError(
    "only the trusted documents of the manifest run here, and this one is not among them "
    "([persisted_queries] trusted_documents)",
    extensions={"code": ErrorCode.PERSISTED_QUERY_NOT_IN_LIST.value},
)


class CheckedDocuments:
    """Parses each document text once (LRU), and validates it once: our linear checks of its
    shape, then Strawberry's validation, both remembered by the text (`KnownErrors`).

    Strawberry's validation cache is keyed by the parsed document, and hashing a document
    hashes every node of it on every request (graphql-core's nodes are frozen dataclasses,
    whose hash is not kept); the text's hash is computed once, by Python, and kept. Parsing
    is here rather than in Strawberry's ParserCache, which does the same in an extension of its
    own (see `OperationHooks`).

    All validation rules run in one pass over the document, so a rule of ours that refuses a
    document cannot spare it the others; and some of graphql-core's are quadratic in what our
    checks bound (see `query_shape.document_problems`). A document our checks refuse is
    therefore refused before the rules run, with only their errors.
    """

    def __init__(
        self, shapes: ShapeChecks, validated: KnownErrors, trusted: frozenset[str] | None = None
    ) -> None:
        self._shapes = shapes
        self._validated = validated
        self._trusted = trusted

    def parse(self, execution: ExecutionContext) -> None:
        """Give *execution* its parsed document, if it may run; else a stand-in, and the
        reason it may not as its errors before execution: it is not a trusted document (in
        trusted-documents mode), it does not parse, or it has more tokens than its limit.

        Not raised: an error raised from this hook escapes Strawberry's handling of parse
        errors, and over websockets the operation then never answered (graphql-ws hung,
        graphql-transport-ws completed with nothing). Validation reports these errors, as it
        does its own, on every transport.
        """
        if execution.graphql_document is not None or execution.query is None:
            return
        # Checked here, where every operation passes, and not in the HTTP view: a websocket's
        # operations never go through the view (issue 24: six documents outside the manifest
        # ran over websockets, a POST upstream among them).
        if self._trusted is not None and not _trusted(execution.query, self._trusted):
            self._refuse(execution, _NOT_TRUSTED)
            return
        budget = _budget(execution)
        if budget is not None and budget.documents_s <= 0:
            self._refuse(execution, _TOO_MUCH_CHECKING)
            return
        # A refusal is not kept: a document over the token limit (parse_options,
        # OperationSetup) is refused again each time it comes.
        query, options = execution.query, execution.parse_options
        started = time.perf_counter()
        try:
            execution.graphql_document = _PARSED.recall(
                (query, tuple(options.items())), lambda: _parsed(query, options), len(query)
            )
        except GraphQLError as error:
            self._refuse(execution, error)
        finally:
            if budget is not None:
                budget.documents_s -= time.perf_counter() - started

    @staticmethod
    def _refuse(execution: ExecutionContext, error: GraphQLError) -> None:
        execution.graphql_document = _stand_in(execution.operation_name)
        execution.pre_execution_errors = [error]

    def validate(
        self, execution: ExecutionContext, validate: Callable[[], list[GraphQLError]]
    ) -> None:
        """Set *execution*'s errors before execution: our checks' or, when they pass, those of
        *validate* (Strawberry's validation)."""
        if execution.pre_execution_errors:
            return  # refused while parsing (`parse`)
        document = execution.graphql_document
        assert document is not None  # parsed before validation
        problems = self._shapes.problems(execution.query, document)
        if not problems:
            # The rules are the same classes on every request (see schema_extensions); they
            # are part of the key all the same, as they are of Strawberry's.
            key = None if execution.query is None else (execution.query, execution.validation_rules)
            started = time.perf_counter()
            problems = self._validated.get(key, execution.query or "", validate)
            budget = _budget(execution)
            if budget is not None:
                budget.documents_s -= time.perf_counter() - started
        execution.pre_execution_errors = problems


def _budget(execution: ExecutionContext) -> RequestBudget | None:
    context = execution.context
    return context.budget if isinstance(context, BatchContext) else None


_TOO_MUCH_CHECKING = GraphQLError(
    "this request's GraphQL documents took longer to parse and validate than it may "
    "(max_document_check_ms), so this one was not; send fewer new documents in one request "
    "(documents sent before cost next to nothing)",
    extensions={"code": ErrorCode.QUERY_TOO_COMPLEX.value},
)


def _trusted(query: str | None, trusted: frozenset[str]) -> bool:
    return query is not None and hashlib.sha256(query.encode()).hexdigest() in trusted

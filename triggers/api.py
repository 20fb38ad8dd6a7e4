"""The REST API trigger: the job request a client posts, its normalization to a `LoopJob`, and
the bearer-token check.

Both functions are pure; the FastAPI handlers that call them live in `app.routes_api`.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from loops.jobs import LoopJob

REASON_DISABLED = "the API is disabled: LOOPWRIGHT_API_TOKEN is not set"
REASON_MISSING = "missing bearer token"
REASON_WRONG = "wrong bearer token"

WORKFLOW_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
MAX_INSTRUCTION_CHARS = 20_000
MAX_PR_NUMBER = 2**31 - 1  # also what every SQL integer column holds


def _storable(value: str) -> str:
    # JSON may carry NUL and lone surrogates; PostgreSQL text and UTF-8 encoding refuse both, so
    # they are rejected here as bad input instead of failing later as a storage error.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text (it contains a lone surrogate)") from exc
    return value


def _whole_number(value: object) -> object:
    # JSON Schema counts 7.0 as an integer, so the API does too; strings and booleans stay out.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WHOLE_NUMBER = BeforeValidator(_whole_number)
"""Goes last in `Annotated[int, Field(...), WHOLE_NUMBER]`, so the schema keeps the bounds."""

Text = Annotated[
    str,
    AfterValidator(_storable),
    # The schema states the NUL rule too (surrogates cannot be expressed there); the validator
    # enforces both with a plainer message than a pattern mismatch.
    Field(json_schema_extra={"pattern": "^[^\\u0000]*$"}),
]


class JobRequest(BaseModel):
    """The body of `POST /api/jobs`.

    A workflow working in a `repo` or `pr` workspace needs `workdir`, a directory on the
    service's host; `repo` and `pr` name the repository the job is about (runs of the same
    repository or pull request run one at a time).
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        # `_pr_needs_repo`, stated in the schema so that clients and fuzzers know it too.
        json_schema_extra={
            "if": {"properties": {"pr": {"type": "integer"}}, "required": ["pr"]},
            "then": {"properties": {"repo": {"type": "string"}}, "required": ["repo"]},
        },
    )

    workflow: Annotated[str, Field(pattern=WORKFLOW_NAME_PATTERN)] = Field(
        description="The workflow's name, as listed by `loopwright workflows check`."
    )
    instruction: Annotated[Text, Field(max_length=MAX_INSTRUCTION_CHARS)] = ""
    workdir: Annotated[Text, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="An absolute path to an existing directory on the service host."
    )
    repo: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")] | None = (
        Field(default=None, description="`owner/name`")
    )
    pr: Annotated[int, Field(ge=1, le=MAX_PR_NUMBER), WHOLE_NUMBER] | None = Field(
        default=None, description="A pull request number in `repo`."
    )
    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/@+-]{1,200}$")] | None = Field(
        default=None,
        description="The maker model (a litellm model string); default: the workflow's.",
    )
    idempotency_key: Annotated[Text, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="A second job with the same key returns the first one."
    )
    requested_by: Annotated[Text, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _pr_needs_repo(self) -> Self:
        if self.pr is not None and self.repo is None:
            raise ValueError(f"pr {self.pr} needs repo ('owner/name')")
        return self


def to_loop_job(request: JobRequest, *, workdir: str | None) -> LoopJob:
    """The job for `request`; `workdir` is the request's directory, already checked and resolved.

    Runs of one pull request, repository or directory share a concurrency key, so they never
    edit the same files at once.
    """
    if request.repo is not None and request.pr is not None:
        key: str | None = f"repo:{request.repo}#{request.pr}"
    elif request.repo is not None:
        key = f"repo:{request.repo}"
    elif workdir is not None:
        key = f"workdir:{workdir}"
    else:
        key = None
    return LoopJob(
        workflow=request.workflow,
        source="api",
        instruction=request.instruction,
        idempotency_key=request.idempotency_key,
        concurrency_key=key,
        workdir=workdir,
        repo=request.repo,
        pr=request.pr,
        requested_by=request.requested_by,
        model=request.model,
    )


def verify_bearer(authorization: str | None, token: str | None) -> str | None:
    """None if `authorization` carries `token` as a bearer token; else why not.

    The comparison takes the same time wherever the tokens differ.
    """
    if not token:
        return REASON_DISABLED
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return REASON_MISSING
    if not hmac.compare_digest(_octets(credentials), _octets(token)):
        return REASON_WRONG
    return None


def _octets(text: str) -> bytes:
    # An environment variable may hold undecodable bytes, which Python keeps as surrogates.
    return text.encode("utf-8", "surrogateescape")

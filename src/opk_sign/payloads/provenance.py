"""SLSA provenance v1 predicates for images built by GitHub Actions.

Built from the claims of the job's *verified* ID token rather than from environment variables: the
claims are what GitHub signed, so the provenance says nothing the PK token beside it does not back.
Layout: https://slsa.dev/spec/v1.0/provenance with the GitHub Actions build type
https://actions.github.io/buildtypes/workflow/v1.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from opk_sign.errors import FormatError
from opk_sign.jose import JSONObject

SLSA_PROVENANCE_V1: Final = "https://slsa.dev/provenance/v1"
GITHUB_WORKFLOW_BUILD_TYPE: Final = "https://actions.github.io/buildtypes/workflow/v1"
DEFAULT_SERVER_URL: Final = "https://github.com"

#: Claims the predicate is built from; a token without one of them is not a GitHub Actions token.
REQUIRED_CLAIMS: Final = (
    "repository",
    "repository_id",
    "repository_owner_id",
    "ref",
    "sha",
    "workflow_ref",
    "job_workflow_ref",
    "event_name",
    "run_id",
    "run_attempt",
    "runner_environment",
)


def _claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise FormatError(
            f"cannot build provenance: the ID token's {name!r} claim is missing or empty",
            hint="provenance is built from a GitHub Actions ID token; use --no-provenance for "
            "tokens from other CI systems",
        )
    return value


def workflow_path(workflow_ref: str, repository: str) -> tuple[str, str]:
    """``(path, ref)`` of ``owner/repo/.github/workflows/f.yml@refs/heads/main``."""
    location, at, ref = workflow_ref.rpartition("@")
    prefix = f"{repository}/"
    if not at or not location.startswith(prefix) or not ref:
        raise FormatError(
            f"workflow_ref {workflow_ref!r} is not {prefix}<path>@<ref>",
        )
    return location[len(prefix) :], ref


def github_provenance(
    claims: Mapping[str, Any],
    *,
    server_url: str = DEFAULT_SERVER_URL,
    started_on: datetime | None = None,
    finished_on: datetime | None = None,
) -> JSONObject:
    """The SLSA provenance v1 predicate of a GitHub Actions run, from its ID token claims."""
    server = server_url.rstrip("/")
    values = {name: _claim(claims, name) for name in REQUIRED_CLAIMS}
    repository = values["repository"]
    path, workflow_ref = workflow_path(values["workflow_ref"], repository)
    repository_url = f"{server}/{repository}"
    metadata: JSONObject = {
        "invocationId": (
            f"{repository_url}/actions/runs/{values['run_id']}/attempts/{values['run_attempt']}"
        ),
    }
    if started_on is not None:
        metadata["startedOn"] = _rfc3339(started_on)
    if finished_on is not None:
        metadata["finishedOn"] = _rfc3339(finished_on)
    return {
        "buildDefinition": {
            "buildType": GITHUB_WORKFLOW_BUILD_TYPE,
            "externalParameters": {
                "workflow": {"ref": workflow_ref, "repository": repository_url, "path": path},
            },
            "internalParameters": {
                "github": {
                    "event_name": values["event_name"],
                    "repository_id": values["repository_id"],
                    "repository_owner_id": values["repository_owner_id"],
                    "runner_environment": values["runner_environment"],
                },
            },
            "resolvedDependencies": [
                {
                    "uri": f"git+{repository_url}@{values['ref']}",
                    "digest": {"gitCommit": values["sha"]},
                }
            ],
        },
        "runDetails": {
            # The builder is the workflow that ran the job: for a reusable workflow that is the
            # reusable workflow itself, an identity the calling repository cannot forge.
            "builder": {"id": f"{server}/{values['job_workflow_ref']}"},
            "metadata": metadata,
        },
    }


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise FormatError("provenance times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Where Ray keeps the trials' stage-boundary checkpoints and exported models: the run
directory (the default), or `study.checkpoints` — object storage (`s3://bucket/prefix`,
`gs://bucket/prefix`) or a folder every node of a cluster sees.

Workers write checkpoints there through Ray, a retried trial reads its own back from there,
and the driver moves a kept model from there into the run directory's models/. The records
(events, results, optuna.db) stay on the driver whatever the store.

S3 takes its settings from the variables every AWS tool reads: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_REGION, and for an S3-compatible store
(MinIO, Ceph, R2, a moto server) AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL. Keys found here
travel to the workers with the store (in Ray's pickles); without them each node uses its own
AWS credential chain (an instance role, ~/.aws).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autostage.errors import AutostageError, first_line

SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss")  # what pyarrow.fs can open


def uri_problem(uri: str) -> str | None:
    """What is wrong with a `study.checkpoints` value, found without connecting."""
    if "://" not in uri:
        return None  # a folder
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return None
    if parts.scheme not in SCHEMES:
        return (f"'{parts.scheme}://' is not a storage autostage can write checkpoints to; "
                f"use s3://bucket/prefix, gs://bucket/prefix, or a folder every node sees")
    if not parts.netloc:
        return f"{uri} names no bucket; e.g. {parts.scheme}://my-bucket/autostage"
    return None


@dataclass(frozen=True)
class CheckpointStore:
    """A place Ray's experiment storage can be: a pyarrow filesystem and a path in it."""

    filesystem: Any  # pyarrow.fs.FileSystem; picklable, so Ray ships it to the workers
    path: str  # Ray's storage_path, inside `filesystem`
    scheme: str = ""  # "" for a local folder

    @property
    def remote(self) -> bool:
        return self.scheme != ""

    def uri(self, path: str) -> str:
        """`path` of this store as a user would name it (s3://bucket/key, or the folder)."""
        return f"{self.scheme}://{path}" if self.remote else path

    def path_of(self, uri: str) -> str:
        """The path in this store of what `uri` names (the inverse of `uri`)."""
        prefix = f"{self.scheme}://"
        return uri.removeprefix(prefix) if self.remote else uri

    def name(self, path: str) -> str:
        """How the records name `path` of this store: relative to the store's own path, so a
        run directory copied or moved (with its store) names its own files, never the
        original's. (A path outside the store, which Ray never writes: its uri, whole.)"""
        return posixpath.relpath(path, self.path) if self.holds(path) else self.uri(path)

    def resolve(self, name: str) -> str:
        """The path in this store of a checkpoint the records name (the inverse of `name`).

        Records written before names were relative hold a whole path (or uri): one inside
        this store is taken as it is; one outside it (the run directory was copied or moved
        since) is re-rooted here from its Ray experiment folder on
        (ray-<time>/trial-<n>/checkpoint_<k>), so an old run reads its own files too. Any
        other whole path is kept: reading it is all a search does, `holds` guards deletes.
        Normalised, as the driver's paths are: a pin must match what it pins."""
        if not (name.startswith("/") or "://" in name):
            return posixpath.normpath(posixpath.join(self.path, name))
        path = posixpath.normpath(self.path_of(name))
        if self.holds(path):
            return path
        parts = path.split("/")
        if len(parts) > 3 and parts[-3].startswith("ray-") and parts[-2].startswith("trial-"):
            return posixpath.normpath(posixpath.join(self.path, *parts[-3:]))
        return path

    def holds(self, path: str) -> bool:
        """Whether `path` lies inside this store: the only place a search deletes."""
        root = posixpath.normpath(self.path)
        inside = posixpath.normpath(path)
        return inside.startswith(root.rstrip("/") + "/")

    def missing(self, paths: list[str]) -> set[str]:
        """Those of `paths` that are not in this store (deleted, or never written)."""
        from pyarrow import fs

        if not paths:
            return set()
        infos = self.filesystem.get_file_info(list(paths))
        return {p for p, i in zip(paths, infos, strict=True) if i.type == fs.FileType.NotFound}

    def probe(self, what: str) -> None:
        """Write and delete one small object, or raise one line naming `what` (the field)."""
        probe = posixpath.join(self.path, f".autostage-probe-{uuid.uuid4().hex}")
        # S3 with short timeouts and no retries: an endpoint that accepts connections and
        # never answers is refused in ~2 * PROBE_TIMEOUT_S (create_dir asks twice), where the
        # search's own client would wait 2 requests x S3_ATTEMPTS x S3_REQUEST_TIMEOUT_S
        filesystem = quick(self.filesystem)
        try:
            filesystem.create_dir(self.path, recursive=True)
            with filesystem.open_output_stream(probe) as f:
                f.write(b"autostage")
            filesystem.delete_file(probe)
        except Exception as e:  # OSError, ArrowInvalid, ... whatever the filesystem raises
            hint = _S3_HINT if isinstance(self.filesystem, _s3_class()) else \
                "check it exists and is writable from here and from every node"
            raise AutostageError(f"{what}: cannot write to {self.uri(self.path)}: {first_line(e)}; "
                                 f"{hint}") from None

    def take(self, path: str, target: Path) -> None:
        """Move the directory `path` of this store to the local folder `target` (which must
        not exist): a rename on one filesystem, a download and a delete from object storage."""
        if not self.remote:
            shutil.move(path, target)
            return
        from pyarrow import fs

        target.mkdir(parents=True)  # (pyarrow creates no folder on the local side)
        fs.copy_files(path, str(target), source_filesystem=self.filesystem,
                      destination_filesystem=fs.LocalFileSystem())
        self.filesystem.delete_dir(path)

    def drop_ray_state(self, experiment: str) -> None:
        """Delete Ray's experiment state in the folder `experiment` (what Tuner.restore
        reads, ~32 kB per trial: 56% of a 10,000-trial run directory); autostage resumes from
        its own records and never reads it. Best effort: a file left behind costs only disk."""
        from pyarrow import fs

        folder = posixpath.join(self.path, experiment)
        try:
            for info in self.filesystem.get_file_info(fs.FileSelector(folder)):
                name = posixpath.basename(info.path)
                if info.type == fs.FileType.File and name.startswith(RAY_STATE):
                    self.filesystem.delete_file(info.path)
        except OSError:
            pass


RAY_STATE = ("experiment_state-", "basic-variant-state-")

_S3_HINT = ("check that the bucket exists, that credentials reach autostage "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an instance role) and, for an "
            "S3-compatible store, AWS_ENDPOINT_URL (e.g. http://127.0.0.1:9000)")


def newest_first(filesystem: Any, latest: str) -> list[str]:
    """`latest` and the checkpoints before it in its folder of `filesystem` (Ray names them
    checkpoint_000000, checkpoint_000001, ...), newest first."""
    from pyarrow import fs

    parent, name = posixpath.split(latest.rstrip("/"))
    infos = filesystem.get_file_info(fs.FileSelector(parent))
    earlier = sorted((posixpath.basename(i.path) for i in infos
                      if i.type == fs.FileType.Directory), reverse=True)
    return [latest] + [posixpath.join(parent, n) for n in earlier
                       if n.startswith("checkpoint_") and n < name]


def open_store(checkpoints: str | None, run_path: Path) -> CheckpointStore:
    """The store `study.checkpoints` names; None: the run directory."""
    from pyarrow import fs

    if checkpoints is None or "://" not in checkpoints or checkpoints.startswith("file://"):
        folder = Path(checkpoints.removeprefix("file://")) if checkpoints else run_path
        return CheckpointStore(fs.LocalFileSystem(), str(folder.resolve()))
    parts = urlsplit(checkpoints)
    path = f"{parts.netloc}{parts.path}".rstrip("/")
    if parts.scheme == "s3":
        return CheckpointStore(s3_filesystem(), path, "s3")
    try:
        filesystem, path = fs.FileSystem.from_uri(checkpoints)
    except Exception as e:
        raise AutostageError(f"study.checkpoints: cannot open {checkpoints}: "
                             f"{first_line(e)}") from None
    return CheckpointStore(filesystem, path.rstrip("/"), parts.scheme)


#: the S3 client's timeouts (seconds; the request timeout is an idle one: no byte for that
#: long) and attempts per request. An operation that fails after them is retried with
#: back-off by the search (autostage.search.outage) for minutes, so each try stays short:
#: a store that accepts connections and never answers costs at most ~1 minute a try
S3_CONNECT_TIMEOUT_S, S3_REQUEST_TIMEOUT_S, S3_ATTEMPTS = 5, 10, 3
#: the probe before a search starts: one attempt, a short wait
PROBE_TIMEOUT_S = 5


def s3_filesystem(probe: bool = False) -> Any:
    """pyarrow's S3 filesystem, set from the usual AWS variables, with timeouts: a store that
    does not answer is an error in seconds, not a search that hangs (`probe`: a client for
    the one write before a search, which gives up soonest)."""
    from pyarrow import fs

    env = os.environ
    options: dict[str, Any] = {
        "connect_timeout": PROBE_TIMEOUT_S if probe else S3_CONNECT_TIMEOUT_S,
        "request_timeout": PROBE_TIMEOUT_S if probe else S3_REQUEST_TIMEOUT_S,
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=1 if probe
                                                        else S3_ATTEMPTS),
    }
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme or "https")
    if region := env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"):
        options["region"] = region
    elif endpoint:
        options["region"] = "us-east-1"  # S3-compatible stores ignore it; pyarrow asks
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        options.update(access_key=env["AWS_ACCESS_KEY_ID"],
                       secret_key=env["AWS_SECRET_ACCESS_KEY"],
                       session_token=env.get("AWS_SESSION_TOKEN"))
    return fs.S3FileSystem(**options)


def quick(filesystem: Any) -> Any:
    """`filesystem`, or for S3 a client of the same store that gives up soonest (one try,
    PROBE_TIMEOUT_S): for asking whether the store answers at all."""
    return s3_filesystem(probe=True) if isinstance(filesystem, _s3_class()) else filesystem


def _s3_class() -> type:
    from pyarrow import fs

    return fs.S3FileSystem

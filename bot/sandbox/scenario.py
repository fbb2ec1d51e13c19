"""Incident scenarios: load, validate and resolve the replay format of ``SCENARIOS.md``.

The format is a contract: files written by anyone must load, and a file that breaks the
contract is refused with one line per problem, naming the file and the field path, e.g.::

    orders.yaml: expect.category: 'memry_limit' is not a taxonomy category; did you mean ...

Invariants of a loaded `Scenario`:

- ``now`` is an aware UTC datetime: the file's ``now``, else the injectable clock at load time
  (truncated to whole seconds so that every derived time is exact);
- every alert ``startsAt``/``endsAt`` is an aware datetime; every relative time inside
  ``cluster.objects`` and ``cluster.events`` (string values under keys ending in ``Timestamp``,
  ``Time`` or ``At``, plus ``notAfter``/``notBefore``/``timeAdded``) is RFC 3339 UTC (``...Z``); all other
  values are exactly as written (the YAML loader keeps timestamps as strings, as Kubernetes does);
- each metric series is parsed (name, labels) and expanded; its last sample lies at ``now``,
  earlier ones ``interval`` apart; no two entries describe the same series;
- ``expect.category`` names taxonomy categories only (`CATEGORIES`); runbook ids are strings,
  unknown ids are allowed (projects add runbooks), but ``runbook`` may not also be forbidden.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.sandbox.promvalues import (
    Sample,
    SeriesSamples,
    expand_values,
    openmetrics_text,
    parse_series_selector,
)
from bot.sandbox.scenario_io import ScenarioError, format_validation_errors, read_single_document
from bot.sandbox.scenario_time import (
    is_relative_duration,
    parse_duration,
    parse_rfc3339,
    resolve_time,
    resolve_times_in,
)

__all__ = [
    "BUILTIN_RUNBOOKS",
    "CATEGORIES",
    "ClusterSection",
    "Expectation",
    "LogStream",
    "MetricSeries",
    "ResourceRef",
    "Scenario",
    "ScenarioAlert",
    "ScenarioError",
    "ScenarioMetrics",
    "load_scenario",
    "load_scenarios",
    "to_openmetrics",
]

CATEGORIES: tuple[str, ...] = (
    "memory_limit",
    "cpu_limit",
    "bad_deploy",
    "config_error",
    "image_pull",
    "dependency_unreachable",
    "scheduling",
    "node_failure",
    "storage",
    "capacity",
    "certificate_expired",
    "quota_exceeded",
    "not_an_issue",
    "unknown",
)
"""The root-cause taxonomy of SCENARIOS.md, in its order, and `unknown`: the honest answer that
the evidence names no cause (a scenario may accept it among its categories)."""

BUILTIN_RUNBOOKS: tuple[str, ...] = (
    "rollback-deployment",
    "restart-deployment",
    "scale-deployment",
    "raise-memory-limit",
    "raise-cpu-limit",
    "delete-pod",
    "cordon-node",
    "drain-node",
    "expand-pvc",
    "rerun-job",
)
"""Runbook ids the project ships; scenarios may also name others."""

Clock = Callable[[], datetime]

_KEBAB = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_KIND = re.compile(r"[A-Z][A-Za-z0-9]*")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_OBJECT_NAME = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9_.:]*[a-zA-Z0-9])?")
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)  # Alertmanager's "no end" for firing alerts


class ResourceRef(NamedTuple):
    """``expect.resource`` parsed: namespace is None for cluster-scoped objects."""

    kind: str
    namespace: str | None
    name: str


# --- field validators --------------------------------------------------------------------------


def _context_now(info: ValidationInfo) -> datetime:
    context = info.context or {}
    now = context.get("now")
    if not isinstance(now, datetime):
        raise ValueError("relative times need the scenario clock: validate through Scenario.from_dict")
    return now


def _scalar_text(value: Any) -> str:
    """YAML scalars as the strings a scenario author meant (``true`` → 'true', 500 → '500')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _string_map(value: Any) -> dict[str, str]:
    """A label or annotation map: valid label names, scalar values as strings."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of names to strings, got {type(value).__name__}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _LABEL_NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        if item is None:
            raise ValueError(f"{key}: value is empty (null)")
        try:
            out[key] = _scalar_text(item)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return out


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    out: list[str] = []
    for index, item in enumerate(value):
        try:
            text = _scalar_text(item)
        except ValueError as exc:
            raise ValueError(f"item {index}: {exc}") from None
        if not text.strip():
            raise ValueError(f"item {index} is empty")
        out.append(text)
    return out


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _check_id(value: str) -> str:
    if not _KEBAB.fullmatch(value):
        raise ValueError(f"{value!r} is not kebab-case (lowercase letters, digits and single dashes)")
    return value


def _check_category(value: Any) -> str | list[str]:
    names = value if isinstance(value, list) else [value]
    if not names:
        raise ValueError("must name at least one taxonomy category")
    for name in names:
        if not isinstance(name, str) or name not in CATEGORIES:
            hint = ""
            if isinstance(name, str):
                close = difflib.get_close_matches(name, CATEGORIES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{name!r} is not a taxonomy category{hint} ({', '.join(CATEGORIES)})")
    if len(set(names)) != len(names):
        raise ValueError(f"lists a category twice: {names}")
    return value


def parse_resource(value: str) -> ResourceRef | None:
    """``Kind/namespace/name``, ``Kind/name`` or ``-`` (None). Raises ValueError otherwise."""
    if value == "-":
        return None
    parts = value.split("/")
    problem = ""
    if len(parts) not in (2, 3):
        problem = "expected Kind/namespace/name, Kind/name (cluster-scoped) or '-'"
    elif not _KIND.fullmatch(parts[0]):
        problem = f"kind {parts[0]!r} must be a Kubernetes kind such as Deployment"
    elif len(parts) == 3 and not _NAMESPACE.fullmatch(parts[1]):
        problem = f"namespace {parts[1]!r} is not a valid namespace name"
    elif not _OBJECT_NAME.fullmatch(parts[-1]):
        problem = f"name {parts[-1]!r} is not a valid object name"
    if problem:
        raise ValueError(f"{value!r}: {problem}")
    return ResourceRef(parts[0], parts[1] if len(parts) == 3 else None, parts[-1])


def _check_resource(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string such as Deployment/shop/checkout, got {type(value).__name__}")
    parse_resource(value)
    return value


def _check_interval(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        interval = value
    elif isinstance(value, str):
        interval = parse_duration(value, signed=False)
    else:
        raise ValueError(f"expected a duration such as 1m or 30s, got {value!r}")
    if interval <= timedelta(0):
        raise ValueError("must be longer than zero")
    return interval


def _require_mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _check_object(value: Any, info: ValidationInfo) -> dict[str, Any]:
    """A manifest: apiVersion, kind, metadata.name; relative times resolved against now."""
    manifest = _require_mapping(value, "an object")
    for key in ("apiVersion", "kind"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise ValueError(f"{key} is missing")
    metadata = manifest.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        raise ValueError(f"{manifest['kind']} has no metadata.name")
    return resolve_times_in(manifest, _context_now(info))


def _check_event(value: Any, info: ValidationInfo) -> dict[str, Any]:
    """A core/v1 Event: involvedObject with kind and name; relative times resolved."""
    event = _require_mapping(value, "an event")
    involved = event.get("involvedObject")
    if not isinstance(involved, Mapping):
        raise ValueError("involvedObject is missing")
    for key in ("kind", "name"):
        if not isinstance(involved.get(key), str) or not involved[key]:
            raise ValueError(f"involvedObject.{key} is missing")
    return resolve_times_in(event, _context_now(info))


NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]
StringMap = Annotated[dict[str, str], BeforeValidator(_string_map)]
StringList = Annotated[list[str], BeforeValidator(_string_list)]
KubeObject = Annotated[dict[str, Any], BeforeValidator(_check_object)]
KubeEvent = Annotated[dict[str, Any], BeforeValidator(_check_event)]


class _Strict(BaseModel):
    """Unknown keys are errors at every level: a misspelt key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- models ------------------------------------------------------------------------------------


class LogStream(_Strict):
    """Container log lines; ``previous`` is the crashed instance (``kubectl logs --previous``)."""

    pod: NonEmptyStr
    container: NonEmptyStr
    previous: bool = False
    lines: Annotated[
        list[str], BeforeValidator(lambda v: [_scalar_text(x) for x in v] if isinstance(v, list) else v)
    ]
    namespace: str | None = None


class ClusterSection(_Strict):
    """The cluster at ``now`` as plain dicts; objects are unique by (kind, namespace, name)."""

    name: str | None = None
    objects: list[KubeObject]
    events: list[KubeEvent]
    logs: list[LogStream] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_objects(self) -> ClusterSection:
        seen: dict[tuple[str, str | None, str], int] = {}
        for index, obj in enumerate(self.objects):
            meta = obj["metadata"]
            key = (obj["kind"], meta.get("namespace"), meta["name"])
            if key in seen:
                where = "/".join(part for part in key if part)
                raise ValueError(f"objects[{index}] duplicates objects[{seen[key]}] ({where})")
            seen[key] = index
        return self


class ScenarioAlert(_Strict):
    """An alert as Alertmanager would deliver it; ``ends_at`` None means no end is known."""

    labels: StringMap
    annotations: StringMap
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    status: Literal["firing", "resolved"] = "firing"
    generator_url: str | None = Field(default=None, alias="generatorURL")

    @field_validator("starts_at", "ends_at", mode="before")
    @classmethod
    def _resolve(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        # absolute times need no clock, so alerts can also be built directly in code
        now = _context_now(info) if is_relative_duration(value) else datetime(1970, 1, 1, tzinfo=UTC)
        resolved = resolve_time(value, now)
        return None if resolved == _GO_ZERO_TIME else resolved

    @field_validator("labels")
    @classmethod
    def _alertname(cls, value: dict[str, str]) -> dict[str, str]:
        if not value.get("alertname"):
            raise ValueError("an alert needs an alertname label")
        return value

    @model_validator(mode="after")
    def _order(self) -> ScenarioAlert:
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise ValueError("endsAt lies before startsAt")
        return self

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]


class MetricSeries(_Strict):
    """One input series: a PromQL-style selector and promtool's expanding values notation."""

    series: str
    values: Annotated[str, BeforeValidator(lambda v: _scalar_text(v) if isinstance(v, int | float) else v)]
    _name: str = PrivateAttr(default="")
    _labels: dict[str, str] = PrivateAttr(default_factory=dict)
    _samples: list[Sample] = PrivateAttr(default_factory=list)

    @field_validator("series")
    @classmethod
    def _parse_series(cls, value: str) -> str:
        parse_series_selector(value)
        return value

    @field_validator("values")
    @classmethod
    def _parse_values(cls, value: str) -> str:
        if not expand_values(value):
            raise ValueError("has no samples")
        return value

    @model_validator(mode="after")
    def _parsed(self) -> MetricSeries:
        self._name, self._labels = parse_series_selector(self.series)
        self._samples = expand_values(self.values)
        return self

    @property
    def name(self) -> str:
        return self._name

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._labels)

    @property
    def samples(self) -> list[Sample]:
        """Expanded values, oldest first; the last one lies at the scenario's ``now``."""
        return list(self._samples)


class ScenarioMetrics(_Strict):
    """Series sampled every ``interval``; no two entries describe the same series."""

    interval: Annotated[timedelta, PlainValidator(_check_interval)]
    series: list[MetricSeries]

    @model_validator(mode="after")
    def _unique(self) -> ScenarioMetrics:
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        for index, entry in enumerate(self.series):
            key = (entry.name, tuple(sorted(entry.labels.items())))
            if key in seen:
                raise ValueError(f"series[{index}] describes the same series as series[{seen[key]}]")
            seen[key] = index
        return self


class Expectation(_Strict):
    """What a good responder concludes; the scorer compares hypotheses with it."""

    category: Annotated[str | list[str], PlainValidator(_check_category)]
    resource: Annotated[str, PlainValidator(_check_resource)]
    mentions: StringList = Field(default_factory=list)
    runbook: NonEmptyStr | None = None
    forbid: StringList = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Expectation:
        if self.runbook is not None and self.runbook in self.forbid:
            raise ValueError(f"runbook {self.runbook!r} is also in forbid")
        return self

    @property
    def categories(self) -> tuple[str, ...]:
        """The acceptable categories, always as a tuple."""
        return tuple(self.category) if isinstance(self.category, list) else (self.category,)

    @property
    def resource_ref(self) -> ResourceRef | None:
        """The expected resource parsed; None for ``-``."""
        return parse_resource(self.resource)


class Scenario(_Strict):
    """One incident frozen in time. Build it with `load_scenario` or `Scenario.from_dict`."""

    id: Annotated[str, AfterValidator(_check_id)]
    title: NonEmptyStr
    source: str | None = None
    now: datetime
    cluster: ClusterSection
    metrics: ScenarioMetrics | None = None
    alerts: list[ScenarioAlert]
    expect: Expectation
    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The file the scenario was loaded from (None when built from a dict)."""
        return self._path

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        clock: Clock | None = None,
        path: Path | None = None,
        source_name: str | None = None,
    ) -> Scenario:
        """Validate a parsed scenario document; raise `ScenarioError` listing every problem."""
        name = source_name or (str(path) if path else "<scenario>")
        if not isinstance(data, Mapping):
            raise ScenarioError([f"{name}: the document must be a mapping of the scenario's fields"])
        problems: list[str] = []
        now = _scenario_now(data.get("now"), clock, name, problems)
        try:
            scenario = cls.model_validate({**data, "now": now}, context={"now": now})
        except ValidationError as exc:
            problems.extend(format_validation_errors(exc, name, Scenario))
        else:
            if not problems:
                scenario._path = path
                return scenario
        raise ScenarioError(problems)

    def series_samples(self) -> list[SeriesSamples]:
        """Every metric series with unix-millisecond timestamps; the last sample lies at ``now``."""
        if self.metrics is None:
            return []
        now_ms = _unix_ms(self.now)
        step_ms = self.metrics.interval // timedelta(milliseconds=1)
        out: list[SeriesSamples] = []
        for entry in self.metrics.series:
            samples = entry.samples
            last = len(samples) - 1
            timed = tuple((now_ms - (last - i) * step_ms, value) for i, value in enumerate(samples))
            out.append(SeriesSamples(entry.name, entry.labels, timed))
        return out


def _unix_ms(value: datetime) -> int:
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _scenario_now(raw: Any, clock: Clock | None, name: str, problems: list[str]) -> datetime:
    """The file's ``now`` (absolute only), else the clock truncated to whole seconds."""
    if raw is not None:
        try:
            if isinstance(raw, datetime):
                return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
            return parse_rfc3339(raw)
        except ValueError as exc:
            problems.append(f"{name}: now: {exc}")
    current = (clock or (lambda: datetime.now(UTC)))()
    current = current.replace(tzinfo=UTC) if current.tzinfo is None else current.astimezone(UTC)
    return current.replace(microsecond=0)


# --- loading -----------------------------------------------------------------------------------


def load_scenario(path: str | Path, *, clock: Clock | None = None) -> Scenario:
    """Load and validate one scenario file; raise `ScenarioError` with every problem found."""
    file = Path(path)
    document = read_single_document(file, str(path))
    return Scenario.from_dict(document, clock=clock, path=file, source_name=str(path))


def _scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            files.append(path)
    return files


def load_scenarios(paths: Iterable[str | Path], *, clock: Clock | None = None) -> list[Scenario]:
    """Load files and folders (their ``*.yaml``/``*.yml``, sorted, not recursive).

    Every file is checked before anything is raised, so one `ScenarioError` reports the
    problems of all files; ids must be unique across the set.
    """
    problems: list[str] = []
    loaded: list[Scenario] = []
    seen: dict[str, Path | None] = {}
    for file in _scenario_files(paths):
        try:
            scenario = load_scenario(file, clock=clock)
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        if scenario.id in seen:
            problems.append(f"{file}: id: {scenario.id!r} is already used by {seen[scenario.id]}")
            continue
        seen[scenario.id] = scenario.path
        loaded.append(scenario)
    if problems:
        raise ScenarioError(problems)
    return loaded


def to_openmetrics(scenario: Scenario, *, extra_labels: Mapping[str, str] | None = None) -> str:
    """The scenario's metrics as OpenMetrics text for ``promtool tsdb create-blocks-from``.

    ``extra_labels`` (for example ``{"cluster": scenario.cluster.name}``) are added to every
    series that does not already carry them. Missing and stale samples are skipped (see
    `bot.sandbox.promvalues.openmetrics_text`). Without metrics the text is just ``# EOF``.
    """
    series = scenario.series_samples()
    if extra_labels:
        series = [SeriesSamples(s.name, {**extra_labels, **s.labels}, s.samples) for s in series]
    return openmetrics_text(series)

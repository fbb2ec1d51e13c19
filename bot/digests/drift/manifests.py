"""Reading the declared state of one drift source: plain YAML files or a kustomization.

A source path is either a directory of plain manifests (every `*.yaml` / `*.yml` below it, each
file possibly multi-document, a `kind: List` flattened) or a kustomization directory (it holds
`kustomization.yaml`, `kustomization.yml` or `Kustomization`), built with the `kustomize`
binary or, failing that, `kubectl kustomize`.

Invariants:
- Nothing here raises for bad input: an unreadable file, bad YAML or a document without
  `kind` / `metadata.name` becomes a problem line naming the file relative to the source and
  its line number, and the other files (and the earlier documents of the same file) still count.
- A kustomize failure is one problem line carrying kustomize's own message; no tool at all is a
  problem line too. Which tool built the source (name and version) is a note. Lines do not
  name the source: the caller prefixes them with the source's label.
- Declared objects are returned as written (deep copies of the parsed YAML); namespaces are not
  defaulted here, because whether a kind is namespaced is known only from the cluster's discovery.
- Files are read in sorted path order, so results and problem lines are stable between runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MANIFEST_SUFFIXES = (".yaml", ".yml")
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZE_OUTPUT = "kustomize build output"
VERSION_TIMEOUT_SECONDS = 10.0
MAX_TOOL_MESSAGE_CHARS = 600
# Directories that never hold manifests a team applies.
SKIPPED_DIRECTORIES = frozenset({".git", ".github", "node_modules", "__pycache__"})
_VERSION_PATTERN = re.compile(r"v?\d+\.\d+(?:\.\d+)?")


@dataclass(frozen=True)
class DeclaredObject:
    """One object the source declares. `origin` is the file relative to the source (or
    `kustomize build output`), `line` the 1-based line its document starts on."""

    body: dict[str, Any]
    origin: str
    line: int

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion") or "")

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str | None:
        return (self.body.get("metadata") or {}).get("namespace") or None


@dataclass
class LoadedSource:
    """What a source declares, what could not be read, and how it was built."""

    objects: list[DeclaredObject] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every manifest was read: only then may an undeclared object be called extra."""
        return not self.problems


@dataclass(frozen=True)
class KustomizeTool:
    """How to run kustomize here: the command prefix and a name with version for the note."""

    command: tuple[str, ...]
    description: str


def is_kustomization(directory: Path) -> bool:
    return any((directory / name).is_file() for name in KUSTOMIZATION_FILES)


def _tool_output(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=VERSION_TIMEOUT_SECONDS,
                                check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{result.stdout}\n{result.stderr}"


def find_kustomize() -> KustomizeTool | None:
    """The `kustomize` binary when present, else `kubectl kustomize`, else None."""
    binary = shutil.which("kustomize")
    if binary:
        found = _VERSION_PATTERN.search(_tool_output([binary, "version"]))
        version = found.group(0) if found else "version unknown"
        return KustomizeTool((binary, "build"), f"kustomize {version}")
    kubectl = shutil.which("kubectl")
    if kubectl:
        text = _tool_output([kubectl, "version", "--client"])
        kustomize = re.search(r"Kustomize Version:\s*(\S+)", text)
        client = re.search(r"Client Version:\s*(\S+)", text)
        described = "kubectl kustomize"
        if client:
            described += f" (kubectl {client.group(1)}"
            described += f", kustomize {kustomize.group(1)})" if kustomize else ")"
        return KustomizeTool((kubectl, "kustomize"), described)
    return None


def _documents(text: str, origin: str, problems: list[str]) -> Iterator[tuple[Any, int]]:
    """Each YAML document of `text` with the line it starts on; a YAML error ends the file
    with a problem line (the documents before it are kept)."""
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            yield loader.construct_document(node), node.start_mark.line + 1
    except yaml.YAMLError as exc:
        problems.append(_yaml_problem(exc, text, origin))
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str, origin: str) -> str:
    """`file line N: not valid YAML (what; where the construct it broke began)`; a problem at the
    end of the stream is placed on the file's last line."""
    last_line = max(1, len(text.splitlines()))
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{origin} line {min(mark.line + 1, last_line)}" if mark is not None else origin
    reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        reason += f"; {context} that starts at line {context_mark.line + 1}"
    return f"{where}: not valid YAML ({reason})"


def parse_manifests(text: str, origin: str, problems: list[str]) -> list[DeclaredObject]:
    """The objects in one file's text; malformed documents become problem lines."""
    objects: list[DeclaredObject] = []
    for document, line in _documents(text, origin, problems):
        if document is None:
            continue
        is_list = isinstance(document, dict) and document.get("kind") == "List"
        items = document.get("items") if is_list else None
        candidates = items if isinstance(items, list) else [document]
        for candidate in candidates:  # the items of a List share their document's line
            where = f"{origin} line {line}"
            if not isinstance(candidate, dict):
                problems.append(f"{where}: the document is not a mapping, so not a Kubernetes object")
                continue
            meta = candidate.get("metadata")
            if not candidate.get("kind") or not candidate.get("apiVersion"):
                problems.append(f"{where}: the document has no kind or apiVersion")
                continue
            if not isinstance(meta, dict) or not meta.get("name"):
                problems.append(f"{where}: the {candidate['kind']} has no metadata.name")
                continue
            objects.append(DeclaredObject(candidate, origin, line))
    return objects


def _manifest_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRECTORIES)
        found.extend(Path(directory) / f for f in files if f.endswith(MANIFEST_SUFFIXES))
    return sorted(found)


def _read_plain(root: Path, loaded: LoadedSource) -> None:
    for path in _manifest_files(root):
        origin = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            loaded.problems.append(f"{origin}: could not be read ({type(exc).__name__})")
            continue
        loaded.objects.extend(parse_manifests(text, origin, loaded.problems))
    loaded.notes.append(f"{len(loaded.objects)} objects read from plain YAML files")


def _short_message(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    message = " ".join(lines) or "no message"
    return message if len(message) <= MAX_TOOL_MESSAGE_CHARS else message[: MAX_TOOL_MESSAGE_CHARS - 1] + "…"


def _build_kustomization(root: Path, loaded: LoadedSource, tool: KustomizeTool | None,
                         timeout_seconds: float) -> None:
    if tool is None:
        loaded.problems.append("a kustomization, but neither the kustomize binary nor kubectl is installed, "
                               "so it could not be built")
        return
    try:
        result = subprocess.run([*tool.command, str(root)], capture_output=True, text=True,
                                timeout=timeout_seconds, check=False)
    except subprocess.TimeoutExpired:
        loaded.problems.append(f"{tool.description} did not finish within {timeout_seconds:g} s")
        return
    except OSError as exc:
        loaded.problems.append(f"{tool.description} could not run ({exc.strerror or type(exc).__name__})")
        return
    if result.returncode != 0:
        loaded.problems.append(f"{tool.description} failed: {_short_message(result.stderr or result.stdout)}")
        return
    loaded.objects.extend(parse_manifests(result.stdout, KUSTOMIZE_OUTPUT, loaded.problems))
    loaded.notes.append(f"kustomization built with {tool.description}: {len(loaded.objects)} objects")


def load_source(root: Path, kustomize_timeout_seconds: float = 60.0,
                tool: KustomizeTool | None = None) -> LoadedSource:
    """Everything `root` declares. `tool` overrides kustomize discovery (None: look it up)."""
    loaded = LoadedSource()
    if not root.is_dir():
        loaded.problems.append(f"no such directory: {root}")
        return loaded
    if is_kustomization(root):
        _build_kustomization(root, loaded, tool or find_kustomize(), kustomize_timeout_seconds)
    else:
        _read_plain(root, loaded)
    return loaded

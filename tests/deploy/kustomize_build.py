"""A small kustomize: enough to build deploy/kubernetes/base and its overlays without a binary.

No Debian package ships kustomize, so the deploy tests resolve the kustomizations themselves and
validate every object that `kubectl apply -k` would create. Where `kubectl` (or `kustomize`) is
installed, test_overlays.py checks that this helper builds exactly what the real tool builds,
object for object, so the two cannot quietly disagree.

Supported, with kustomize's semantics: `namespace`, `resources` (manifest files and folders that
hold a kustomization), `images` (`name`, `newName`, `newTag`, `digest`), `generatorOptions.labels`
and `configMapGenerator` (`name`, `files` with an optional `key=` prefix, `behavior`
create/replace/merge, `options.labels`). Invariants:
- Any other field is refused with KustomizeError naming it: a kustomization that needs more
  must extend this helper (and the cross-check proves the extension).
- Files are read only in or below the kustomization's own folder, symlinks resolved first (as
  kustomize's default load restrictor does), and a folder that contains a kustomization already
  being built is refused (kustomize's cycle check: an overlay cannot sit inside its base).
- A generated ConfigMap is named `<name>-<hash>` with kustomize's content hash, computed once
  the top-level build is complete (so an overlay's `replace` or `merge` changes the hash), and
  every reference to it in a pod template is renamed with it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "images", "generatorOptions", "configMapGenerator"}
)
SUPPORTED_GENERATOR_FIELDS = frozenset({"name", "files", "behavior", "options"})
SUPPORTED_IMAGE_FIELDS = frozenset({"name", "newName", "newTag", "digest"})
# Kinds the namespace transformer leaves alone (the ones these manifests use, and a few more).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "IngressClass",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)
# kustomize's hash encoding: the first ten hex digits, with these replaced (no vowels, no
# digits that look like letters).
_HASH_LETTERS = str.maketrans("013ae", "ghkmt")
# Marks a ConfigMap this helper generated, until its hash suffix is appended.
_GENERATED = "__generated__"


class KustomizeError(ValueError):
    """A kustomization this helper cannot (or kustomize would not) build; one line."""


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build directory` prints, in no meaningful order."""
    objects = _build(directory.resolve(), visited=())
    names = {}
    for obj in objects:
        if obj.pop(_GENERATED, False):
            old = obj["metadata"]["name"]
            obj["metadata"]["name"] = names[old] = f"{old}-{config_map_hash(obj)}"
    for obj in objects:
        for pod_spec in pod_specs(obj):
            _rename_config_map_references(pod_spec, names)
    return objects


def config_map_hash(config_map: dict[str, Any]) -> str:
    """kustomize's name suffix for a ConfigMap: sha256 over Go's JSON encoding (sorted keys,
    HTML characters escaped) of its kind, data and an empty name."""
    encoded: dict[str, Any] = {"kind": "ConfigMap", "name": "", "data": config_map.get("data", {})}
    if config_map.get("binaryData"):
        encoded["binaryData"] = config_map["binaryData"]
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10].translate(_HASH_LETTERS)


# --------------------------------------------------------------------------- one kustomization


def _build(root: Path, visited: tuple[Path, ...]) -> list[dict[str, Any]]:
    for earlier in visited:
        if earlier == root or earlier.is_relative_to(root):
            raise KustomizeError(f"cycle: {root} contains {earlier}, which is being built")
    kustomization = _read_kustomization(root)
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = _inside(root, entry, what="resource", allow_outside=True)
        if path.is_dir():
            objects += _build(path, (*visited, root))
        else:
            _inside(root, entry, what="resource")
            objects += _load_manifests(path)
    _generate_config_maps(root, kustomization, objects)
    namespace = kustomization.get("namespace")
    for obj in objects:
        if namespace and obj["kind"] not in CLUSTER_SCOPED_KINDS:
            obj["metadata"]["namespace"] = namespace
        for pod_spec in pod_specs(obj):
            for image in kustomization.get("images", []):
                _set_image(pod_spec, image)
    return objects


def _read_kustomization(root: Path) -> dict[str, Any]:
    found = [root / name for name in KUSTOMIZATION_FILES if (root / name).is_file()]
    if len(found) != 1:
        raise KustomizeError(f"{root}: expected exactly one of {', '.join(KUSTOMIZATION_FILES)}")
    kustomization = yaml.safe_load(found[0].read_text(encoding="utf-8")) or {}
    unknown = sorted(set(kustomization) - SUPPORTED_FIELDS)
    if unknown:
        raise KustomizeError(f"{found[0]}: fields this helper does not implement: {', '.join(unknown)}")
    for image in kustomization.get("images", []):
        if set(image) - SUPPORTED_IMAGE_FIELDS or "name" not in image:
            raise KustomizeError(f"{found[0]}: unsupported image entry {image}")
    return kustomization


def _inside(root: Path, entry: str, *, what: str, allow_outside: bool = False) -> Path:
    """`entry` resolved against `root`; outside it only when `allow_outside` (folders of other
    kustomizations may be anywhere, files may not)."""
    path = (root / entry).resolve()
    if not path.exists():
        raise KustomizeError(f"{root}: {what} {entry!r} does not exist")
    if not allow_outside and not path.is_relative_to(root):
        raise KustomizeError(f"{root}: {what} {entry!r} is not in or below {root} (load restrictor)")
    return path


def _load_manifests(path: Path) -> list[dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    for doc in documents:
        if not isinstance(doc, dict) or not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
            raise KustomizeError(f"{path}: a document without kind or metadata.name")
    return documents


# --------------------------------------------------------------------------- ConfigMaps


def _generate_config_maps(root: Path, kustomization: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """Adds (create) or rewrites (replace, merge) the generated ConfigMaps in `objects`."""
    common_labels = (kustomization.get("generatorOptions") or {}).get("labels", {})
    if set(kustomization.get("generatorOptions") or {}) - {"labels"}:
        raise KustomizeError(f"{root}: generatorOptions other than labels are not implemented")
    for generator in kustomization.get("configMapGenerator", []):
        unknown = set(generator) - SUPPORTED_GENERATOR_FIELDS
        options = generator.get("options") or {}
        if unknown or set(options) - {"labels"}:
            raise KustomizeError(f"{root}: configMapGenerator fields not implemented: {sorted(unknown) or options}")
        name, behavior = generator["name"], generator.get("behavior", "create")
        data = _file_data(root, generator.get("files", []))
        labels = {**common_labels, **options.get("labels", {})}
        existing = [obj for obj in objects if obj.get(_GENERATED) and obj["metadata"]["name"] == name]
        if behavior == "create":
            if existing:
                raise KustomizeError(f"{root}: ConfigMap {name} is generated twice; use behavior merge or replace")
            metadata = {"name": name, **({"labels": labels} if labels else {})}
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data,
                            _GENERATED: True})
        elif behavior in ("replace", "merge"):
            if len(existing) != 1:
                raise KustomizeError(f"{root}: no generated ConfigMap {name} to {behavior}")
            (target,) = existing
            target["data"] = data if behavior == "replace" else {**target.get("data", {}), **data}
            if labels:
                target["metadata"]["labels"] = {**target["metadata"].get("labels", {}), **labels}
        else:
            raise KustomizeError(f"{root}: unknown behavior {behavior!r} for ConfigMap {name}")


def _file_data(root: Path, entries: list[str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for entry in entries:
        key, _, source = entry.partition("=") if "=" in entry else ("", "", entry)
        path = _inside(root, source, what="file")
        if not path.is_file():
            raise KustomizeError(f"{root}: {source!r} must resolve to a file")
        key = key or Path(source).name
        if key in data:
            raise KustomizeError(f"{root}: key {key!r} appears twice in one ConfigMap")
        data[key] = path.read_text(encoding="utf-8")
    return data


# --------------------------------------------------------------------------- pod templates


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if obj["kind"] == "Pod":
        return [spec]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    template = spec.get("template") if isinstance(spec, dict) else None
    return [template["spec"]] if isinstance(template, dict) and "spec" in template else []


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def _set_image(pod_spec: dict[str, Any], image: dict[str, str]) -> None:
    for container in containers(pod_spec):
        name, tag, digest = split_image(container["image"])
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if image.get("digest"):
            container["image"] = f"{name}@{image['digest']}"
        else:
            tag = image.get("newTag", tag)
            container["image"] = f"{name}:{tag}" if tag else (f"{name}@{digest}" if digest else name)


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = reference.partition("@")
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _rename_config_map_references(pod_spec: dict[str, Any], names: dict[str, str]) -> None:
    def rename(ref: dict[str, Any] | None) -> None:
        if ref and ref.get("name") in names:
            ref["name"] = names[ref["name"]]

    for volume in pod_spec.get("volumes", []):
        rename(volume.get("configMap"))
        for source in (volume.get("projected") or {}).get("sources", []):
            rename(source.get("configMap"))
    for container in containers(pod_spec):
        for env in container.get("env", []):
            rename((env.get("valueFrom") or {}).get("configMapKeyRef"))
        for env_from in container.get("envFrom", []):
            rename(env_from.get("configMapRef"))


def deep_copy(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy callers may change without touching a cached build."""
    return copy.deepcopy(objects)

"""The drift digest: the live cluster against the declared state (manifests or a kustomization).

`manifests` reads what a source declares, `compare` normalises and diffs one object, `managers`
attributes a differing field to its field manager, `build` assembles the `DigestReport`.
Invariant: `build` never raises; what could not be checked is a line in the report's problems.
"""

from bot.digests.drift.build import DriftConfig, DriftSource, build

__all__ = ["DriftConfig", "DriftSource", "build"]

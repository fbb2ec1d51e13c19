"""Resource quantities as the API server stores them: in canonical form.

A real API server parses every quantity it is sent and serialises it canonically, so what a
client reads back may be spelled differently from what it wrote: `1024Mi` comes back `1Gi`,
`0.5` (CPU) comes back `500m`, `1000` comes back `1k`. The rules kept here:

- the suffix family of the input stays: binary (`Ki` … `Ei`) or decimal (none, `m`, `k` … `E`);
  a number written with an exponent (`1e3`) is shown as decimal;
- the largest suffix whose mantissa is a whole number is chosen;
- a binary quantity that is not a whole number of bytes is shown as decimal;
- precision finer than a milli-unit is rounded up to the next milli-unit.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from kubernetes.utils import parse_quantity

BINARY = (("Ei", 2 ** 60), ("Pi", 2 ** 50), ("Ti", 2 ** 40), ("Gi", 2 ** 30), ("Mi", 2 ** 20), ("Ki", 2 ** 10))
DECIMAL = (("E", 10 ** 18), ("P", 10 ** 15), ("T", 10 ** 12), ("G", 10 ** 9), ("M", 10 ** 6), ("k", 10 ** 3),
           ("", 1))
MILLI = Decimal("0.001")


def canonical(text: str) -> str:
    """The canonical spelling of quantity `text`; ValueError when it is not one."""
    value = Decimal(parse_quantity(text)).quantize(MILLI, rounding=ROUND_CEILING)
    sign, magnitude = ("-" if value < 0 else ""), abs(value)
    binary = text.strip().endswith("i")
    if binary and magnitude == magnitude.to_integral_value():
        whole = int(magnitude)
        suffix, base = next(((s, b) for s, b in BINARY if whole >= b and whole % b == 0), ("", 1))
        return f"{sign}{whole // base}{suffix}"
    if magnitude == magnitude.to_integral_value():
        whole = int(magnitude)
        suffix, base = next(((s, b) for s, b in DECIMAL if whole and whole % b == 0), ("", 1))
        return f"{sign}{whole // base}{suffix}"
    return f"{sign}{int(magnitude * 1000)}m"


def canonical_resources(resources: object) -> None:
    """Rewrite the `requests` and `limits` of a `resources` block in place (values that are not
    quantities are left for validation to refuse)."""
    if not isinstance(resources, dict):
        return
    for key in ("requests", "limits"):
        block = resources.get(key)
        if not isinstance(block, dict):
            continue
        for name, quantity in block.items():
            try:
                block[name] = canonical(str(quantity))
            except (ValueError, ArithmeticError):
                continue

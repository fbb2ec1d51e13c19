"""Quantities as a real API server stores them: canonical, in the family they were written in."""

from __future__ import annotations

import pytest

from bot.sandbox.kube.quantity import canonical


@pytest.mark.parametrize(("written", "stored"), [
    ("1024Mi", "1Gi"), ("1536Mi", "1536Mi"), ("1.5Gi", "1536Mi"), ("512Mi", "512Mi"), ("32880940Ki", "32880940Ki"),
    ("0.5", "500m"), ("500m", "500m"), ("1000m", "1"), ("1000", "1k"), ("1500", "1500"), ("2000M", "2G"),
    ("1e3", "1k"), ("0.0001", "1m"), ("0.1Ki", "102400m"), ("0", "0"),
])
def test_quantities_are_stored_canonically(written, stored):
    assert canonical(written) == stored


def test_what_is_not_a_quantity_is_refused():
    with pytest.raises(ValueError):
        canonical("lots")

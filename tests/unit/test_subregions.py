"""A volume map's energy per tumour sub-region (shared/evaluation/localisation.py: ``subregions``,
``summarise_subregions``): the shares by hand, and over a cohort of BraTS-labelled tumours the sign test finds a
planted preference (wild-type maps on the enhancing rim, mutant maps on the core, as fixtures/mri.py draws them)
and finds none in maps spread evenly over the brain."""

from __future__ import annotations

import numpy as np
import pytest

from shared.evaluation.localisation import BRATS_REGIONS, subregions, summarise_subregions

pytestmark = pytest.mark.unit

SHAPE = (24, 24, 24)


def test_the_shares_by_hand_and_a_region_the_exam_lacks_is_absent():
    brain = np.zeros((6, 6, 6), bool)
    brain[1:5, 1:5, 1:5] = True  # 64 voxels
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1, 1, 1:5] = 1  # 4 core voxels
    labels[2, 1:5, 1:5] = 2  # 16 oedema voxels
    labels[0, 0, 0] = 4  # outside the brain: not the exam's enhancing tumour
    energy = np.zeros((6, 6, 6))
    energy[1, 1, 1] = 3.0  # 3 in the core
    energy[2, 2, 2] = 1.0  # 1 in the oedema
    energy[0, 0, 0] = 100.0  # outside the brain: not counted
    out = subregions(energy, labels, brain)
    assert set(out) == {"NCR/NET", "ED"}
    assert out["NCR/NET"] == pytest.approx({"energy_share": 0.75, "volume_share": 4 / 64, "ratio": 0.75 / (4 / 64)})
    assert out["ED"] == pytest.approx({"energy_share": 0.25, "volume_share": 16 / 64, "ratio": 1.0})
    # BraTS 2023 writes the enhancing tumour as 3
    labels[1, 4, 4] = 3
    assert subregions(energy, labels, brain)["ET"]["volume_share"] == pytest.approx(1 / 64)
    # an empty map has no share, and is left out of the tests
    empty = subregions(np.zeros_like(energy), labels, brain)
    assert np.isnan(empty["ED"]["energy_share"]) and empty["ED"]["volume_share"] == pytest.approx(0.25)
    rows = [{"class": "a", "region": r, **s} for r, s in empty.items()]
    rows += [{"class": "a", "region": r, **s} for r, s in subregions(energy, labels, brain).items()]
    assert summarise_subregions(rows)["a"]["ED"]["n"] == 1
    assert list(BRATS_REGIONS) == ["NCR/NET", "ED", "ET"]


def _exam(rng: np.random.Generator, mutant: bool) -> tuple[np.ndarray, np.ndarray]:
    """(BraTS labels, brain) of one synthetic tumour as fixtures/mri.py draws them: a wild-type necrotic core inside
    an enhancing rim and a large oedema; a mutant tumour all non-enhancing core, with a thin oedema."""
    grid = np.indices(SHAPE).astype(float)
    centre = np.array(SHAPE) / 2
    brain = (((grid - centre[:, None, None, None]) / 10.5) ** 2).sum(0) <= 1
    where = centre + rng.uniform(-4, 4, 3)
    d = np.sqrt((((grid - where[:, None, None, None]) / rng.uniform(2.5, 4.0)) ** 2).sum(0))
    labels = np.zeros(SHAPE, np.uint8)
    if mutant:
        labels[d <= rng.uniform(1.1, 1.3)] = 2
        labels[d <= 1] = 1
    else:
        labels[d <= rng.uniform(1.6, 2.1)] = 2
        labels[d <= 1] = 4
        labels[d <= rng.uniform(0.3, 0.5)] = 1
    labels[~brain] = 0
    return labels, brain


def _table(maps) -> dict:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        cls = "mutant" if i % 2 else "wildtype"
        labels, brain = _exam(rng, cls == "mutant")
        rows += [{"class": cls, "region": r, **s} for r, s in subregions(maps(rng, cls, labels), labels, brain).items()]
    return summarise_subregions(rows)


def test_a_planted_preference_is_found_for_its_class_and_region():
    def planted(rng, cls, labels):  # noise over the whole volume, plus energy on the class's planted region
        energy = rng.uniform(0, 1, SHAPE)
        energy[labels == (4 if cls == "wildtype" else 1)] += 3.0
        return energy

    table = _table(planted)
    wt, mut = table["wildtype"]["ET"], table["mutant"]["NCR/NET"]
    for r in (wt, mut):
        assert r["n"] == 12 and r["above_chance"] == 12 and r["p_sign_test"] < 1e-3
        assert r["energy_share_mean"] > 2 * r["volume_share_mean"] and r["ratio_mean"] > 2
    # the other regions lose what the planted one gains: below chance, also significant (two-sided)
    assert table["wildtype"]["ED"]["above_chance"] == 0 and table["wildtype"]["ED"]["p_sign_test"] < 1e-3
    assert table["mutant"]["ED"]["above_chance"] == 0
    # mutant tumours have no enhancing voxel: left out of that test, not counted as a share of zero
    assert "ET" not in table["mutant"]


def test_a_map_spread_evenly_over_the_brain_prefers_no_region():
    table = _table(lambda rng, cls, labels: rng.uniform(0, 1, SHAPE))
    cells = [r for per_region in table.values() for r in per_region.values()]
    assert len(cells) == 5  # wild-type: three regions, mutant: two
    for r in cells:
        assert r["ratio_mean"] == pytest.approx(1.0, abs=0.1)
        assert r["p_sign_test"] > 0.01

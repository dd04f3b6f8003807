"""Firmware profiles: which kmodel versions load where, heap budgets, and the refusals' advice."""
import pytest

from host import firmware
from host.errors import UserError

KEYS = {"description", "kmodel_versions", "api", "heap_budget", "gc_heap", "errors"}


def test_profiles_are_complete_and_plausible():
    assert {"canmv-v5", "canmv", "maixpy-v4", "maixpy-v3"} <= set(firmware.PROFILES)
    for name, profile in firmware.PROFILES.items():
        assert KEYS <= set(profile), name
        assert set(profile["errors"]) == {"version", "memory"}
        # what is left of 6 MiB after a ~1.6-2 MiB firmware and the GC heap
        assert 100000 < profile["heap_budget"] < firmware.GENERAL_RAM - 2 * firmware.MIB
    assert firmware.PROFILES["canmv-v5"]["kmodel_versions"] == (3, 4, 5)
    assert firmware.PROFILES["maixpy-v3"]["kmodel_versions"] == (3,)
    assert firmware.PROFILES["maixpy-v4"]["api"] == firmware.API_LEGACY
    assert firmware.PROFILES["canmv"]["api"] == firmware.API_CANMV_OLD
    assert firmware.PROFILES["canmv-v5"]["api"] == firmware.API_CANMV_NEW
    assert firmware.get_profile(firmware.DEFAULT_PROFILE)["name"] == "canmv-v5"


def test_v5_on_stock_maixpy_is_refused_with_what_to_do():
    with pytest.raises(UserError) as err:
        firmware.check_loadable("maixpy-v4", 5, 200000)
    message = str(err.value)
    assert "maixpy-v4 loads kmodel V3/V4 only, this kmodel is V5" in message
    assert "2002" in message and "ncc v0.2" in message and "CANMV_ENABLE_KMODEL_V5" in message
    assert "\n" not in message
    # CanMV releases' loader text (kendryte/canmv@main Maix_kpu.c: py_kpu_load_kmodel)
    with pytest.raises(UserError, match="Failed to init model"):
        firmware.check_loadable("canmv", 5, 200000)
    with pytest.raises(UserError, match="V4.*ncc v0.1"):
        firmware.check_loadable("maixpy-v3", 4, 200000)


def test_loadable_versions_pass():
    for version in (3, 4, 5):
        firmware.check_loadable("canmv-v5", version, 100000, working_memory=200000)
    firmware.check_loadable("maixpy-v4", 4, 1000000)


def test_model_larger_than_the_heap_is_refused():
    budget = firmware.PROFILES["maixpy-v4"]["heap_budget"]
    with pytest.raises(UserError, match="2006.*smaller.*GC heap"):
        firmware.check_loadable("maixpy-v4", 4, budget - 1000, working_memory=2000)
    custom = dict(firmware.get_profile("maixpy-v4"), heap_budget=budget + 5000)
    firmware.check_loadable(custom, 4, budget - 1000, working_memory=2000)


def test_unknown_profile():
    with pytest.raises(UserError, match="unknown firmware 'maixpy'.*canmv-v5"):
        firmware.get_profile("maixpy")


def test_the_v5_runtime_code_is_charged_to_feat_kpu_builds_only():
    """feat/kpu's image carries nncase v1.1.0's runtime (docs/flash.md "V5 runtime code"):
    a model that CanMV releases hold is refused on canmv-v5 once it needs that room too."""
    room = firmware.PROFILES["canmv"]["heap_budget"]
    v5_room = firmware.PROFILES["canmv-v5"]["heap_budget"]
    assert room - v5_room == firmware.NNCASE_V1_RUNTIME_BYTES
    needed = v5_room + firmware.NNCASE_V1_RUNTIME_BYTES // 2
    firmware.check_loadable("canmv", 4, needed - 100000, working_memory=100000)
    firmware.check_loadable("canmv-v5", 4, v5_room - 100000, working_memory=100000)
    with pytest.raises(UserError, match="firmware canmv-v5 has about %d free" % v5_room):
        firmware.check_loadable("canmv-v5", 5, needed - 100000, working_memory=100000)

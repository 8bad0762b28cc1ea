"""The pure-Python census's gc pause and the target's own gc switches."""

from __future__ import annotations

import gc


def test_a_targets_gc_switch_during_a_pass_is_not_undone() -> None:
    """A target thread that disables gc while a pass has it paused: its call waits for the
    pass to end, so the pass's restore cannot undo it (the agent once re-enabled gc here)."""
    import threading

    from heapwatch.agent import census

    assert gc.isenabled()
    with census._GcPaused():  # outside an agent: gc's own functions
        assert gc.disable is census._GC_REAL["disable"]
    census.install_gc_switches()  # as the agent does at start
    try:
        with census._GcPaused():
            assert gc.disable is not census._GC_REAL["disable"]  # the pass-through is in
            t = threading.Thread(target=gc.disable)
            t.start()
            t.join(0.2)
            assert t.is_alive()  # waits for the pass
        t.join(10)
        assert not t.is_alive() and not gc.isenabled()  # the target's disable stands
        with census._GcPaused():
            pass
        assert not gc.isenabled()  # and a later pass leaves it disabled
    finally:
        census._GC_REAL["enable"]()
        census.remove_gc_switches()
    assert gc.disable is census._GC_REAL["disable"] and gc.isenabled()

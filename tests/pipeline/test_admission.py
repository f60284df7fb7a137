"""Admission control for the LLM's texts (agent/pipeline/admission.py) and its bound from the
machine (agent/llm/hardware.py), on hand-worked cases."""

from __future__ import annotations

import pytest

from agent.llm.hardware import resolve_in_flight
from agent.pipeline.admission import LLMAdmission


def test_past_the_limit_an_answer_is_refused_and_a_place_comes_back_on_leaving():
    admission = LLMAdmission(2)
    with admission.enter() as first, admission.enter() as second:
        assert first and second and admission.in_flight == 2
        with admission.enter() as third:
            assert not third and admission.in_flight == 2  # refused: nothing taken
        assert admission.in_flight == 2
    assert admission.in_flight == 0
    with pytest.raises(RuntimeError), admission.enter() as admitted:  # an error inside gives it back too
        assert admitted
        raise RuntimeError("engine gone")
    assert admission.in_flight == 0
    assert "busy with 2 other answers" in admission.busy_reason()
    assert "busy with 1 other answer " in LLMAdmission(1).busy_reason()
    with pytest.raises(ValueError, match="must be >= 1"):
        LLMAdmission(0)


def test_the_bound_comes_from_the_cores_unless_set():
    assert resolve_in_flight(0, cores=2) == 2
    assert resolve_in_flight(0, cores=16) == 16
    assert resolve_in_flight(0, cores=0) == 1
    assert resolve_in_flight(3, cores=16) == 3
    assert resolve_in_flight(0) >= 1
    with pytest.raises(ValueError, match="MUSE_LLM_MAX_IN_FLIGHT must be >= 0"):
        resolve_in_flight(-1)

"""Fuzzed session JSON never crashes the program: only InputError, and the CLI exits 2.

Three levels: random JSON documents; random mutations (replace, delete, insert) of a
valid session's structure, parsed; and mutated sessions that still parse, replayed
end to end (inputs read, registration, ROIs, calibration, cells).
"""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpi_viewer.cli import main
from mpi_viewer.errors import InputError
from mpi_viewer.study import pipeline as P
from mpi_viewer.study import session as S

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    from test_replay import shared_demo_session

    path = shared_demo_session(tmp_path_factory)
    return path, json.loads(path.read_text(encoding="utf-8"))


def _paths(d, prefix=()):
    """Every (container path) in a JSON document."""
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, prefix + (i,))


def _mutate(doc, data):
    doc = copy.deepcopy(doc)
    paths = [p for p in _paths(doc) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = doc
        try:
            for k in path[:-1]:
                parent = parent[k]
            key = path[-1]
            op = data.draw(st.sampled_from(["replace", "delete", "insert", "number"]))
            if op == "replace":
                parent[key] = data.draw(json_values)
            elif op == "delete":
                del parent[key]
            elif op == "insert" and isinstance(parent, dict):
                parent[data.draw(st.text(max_size=8))] = data.draw(json_values)
            elif (
                op == "number"
                and isinstance(parent[key], (int, float))
                and not isinstance(parent[key], bool)
            ):
                parent[key] = data.draw(
                    st.sampled_from([0, -1, 1e308, -1e-300, 10**40, math.inf, math.nan, 2.5])
                )
        except (KeyError, IndexError, TypeError):
            continue
    return doc


def _parse_only_input_error(text):
    try:
        S.parse_session(text, source="fuzz.json")
    except InputError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_random_json_is_input_error_or_a_session(value):
    _parse_only_input_error(json.dumps(value))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_input_error(blob):
    _parse_only_input_error(blob)


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_sessions_parse_or_give_input_error(valid, data):
    _, doc = valid
    _parse_only_input_error(json.dumps(_mutate(doc, data)))


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_sessions_replay_without_crashing(valid, data, tmp_path_factory):
    """Mutations aimed at the analysis sections; whatever parses is replayed in full."""
    path, doc = valid
    doc = copy.deepcopy(doc)
    section = data.draw(
        st.sampled_from(["rois", "registration", "calibration", "cells", "results", "layers"])
    )
    sub = _mutate({section: doc[section]}, data)
    doc[section] = sub.get(section, doc[section])
    mutated = path.with_name("mutated.json")
    mutated.write_text(json.dumps(doc), encoding="utf-8")
    status = P.replay_path(mutated).status  # never raises for bad input
    assert status in (0, 1, 2)


def test_cli_exits_2_on_invalid_sessions(valid, capsys):
    path, doc = valid
    bad = copy.deepcopy(doc)
    bad["rois"][0]["params"] = {"method": "halfmax", "fraction": "half"}
    p = path.with_name("bad_params.json")
    p.write_text(json.dumps(bad), encoding="utf-8")
    assert main(["replay", str(p)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

"""What crosses the border: the shared schemas travel as plain JSON and come back equal."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mus_qgis.engine.jobs import registered
from mus_qgis.shared.errors import MusError
from mus_qgis.shared.schemas.readings import AgreementParams, AgreementResult

counts = st.integers(0, 1_000)
shares = st.floats(0, 1) | st.just(math.nan)


@st.composite
def agreement_results(draw):
    size = draw(st.integers(0, 5))
    per_class = st.lists(shares, min_size=size, max_size=size)
    return AgreementResult(
        classes=[f"{11100 + i}" for i in range(size)],
        matrix=draw(
            st.lists(st.lists(counts, min_size=size, max_size=size), min_size=size, max_size=size)
        ),
        overall_accuracy=draw(st.floats(0, 1)),
        kappa=draw(st.floats(-1, 1)),
        precision=draw(per_class),
        recall=draw(per_class),
        f1=draw(per_class),
        support=draw(st.lists(counts, min_size=size, max_size=size)),
    )


def same(a, b) -> bool:
    """Equal, NaN equal to NaN (a class never predicted has no precision, on both sides)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@given(agreement_results())
def test_an_agreement_result_survives_the_pipe(result):
    carried = json.loads(json.dumps(result.to_dict()))  # as the worker's protocol carries it
    back = AgreementResult.from_dict(carried)
    assert same(back.to_dict(), result.to_dict())
    assert back.total == sum(map(sum, result.matrix))


def test_a_missing_field_is_named_with_what_to_do():
    answer = AgreementResult(["1"], [[3]], 1.0, 1.0, [1.0], [1.0], [1.0], [3]).to_dict()
    del answer["kappa"]
    with pytest.raises(MusError, match=r"AgreementResult lacks kappa: .*Set up the engine again"):
        AgreementResult.from_dict(answer)


def test_the_agreement_job_takes_and_gives_its_schemas(tmp_path):
    run = registered()["agreement"]
    assert (run.params, run.result) == (AgreementParams, AgreementResult)
    pairs = tmp_path / "pairs.json"
    reference = ["11100", "11100", "12100", "14100", "12100"]
    predicted = ["11100", "12100", "12100", "14100", None]
    pairs.write_text(json.dumps({"reference": reference, "predicted": predicted}), "utf-8")
    answer = run(AgreementParams(str(pairs)).to_dict(), None)
    json.dumps(answer)  # plain JSON, nothing NumPy
    result = AgreementResult.from_dict(answer)
    # Four pairs (the one without a prediction is left out), three of them agreeing.
    assert result.classes == ["11100", "12100", "14100"]
    assert result.matrix == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert result.total == 4 and result.overall_accuracy == pytest.approx(0.75)
    assert result.support == [2, 1, 1]
